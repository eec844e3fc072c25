"""An optional LLM judge that lists the objects a response names, via an OpenAI-compatible API.

Object HalBench's later versions (RLHF-V) let GPT extract the objects of long answers, where
rules miss paraphrases. This judge asks any OpenAI-compatible `/chat/completions` endpoint
(vLLM, TGI, llama.cpp, OpenAI) for a JSON list of the physical objects a description claims,
then maps each through the same synonym table as the rules, so both extractors report the same
canonical names. The API key is given by the caller (the eval stage reads it from
MFPO_JUDGE_API_KEY, which the Job builder fills from objectHalbench.judgeSecretRef and nothing
else), never from the run's spec; a judge that refuses it (401, 403) is bad input, not a retry.
Plain urllib: one POST per response needs no client library.

Called by mfpo_runtime.eval.object_halbench when a benchmark's options say `judge: llm`.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from mfpo_core.contract import BadInput

from mfpo_runtime.data.mentions import MentionExtractor

PROMPT = (
    "List every physical object that the following image description says is present in the "
    "image. Leave out objects the description says are absent. Answer with a JSON array of "
    "lower-case singular nouns and nothing else.\n\nDescription: {response}"
)


class JudgeError(RuntimeError):
    """The judge endpoint failed or answered something that is not a JSON list (retryable)."""


# The judge's answers to a key it does not accept: no retry with the same key can pass.
REFUSED_KEY_STATUSES = (401, 403)


@dataclass
class OpenAIJudge:
    base_url: str  # e.g. http://judge:8000/v1
    model: str
    api_key: str | None = None  # sent as a Bearer token; None: no Authorization header
    timeout_s: float = 60.0

    def __repr__(self) -> str:  # never print the key
        return f"OpenAIJudge(base_url={self.base_url!r}, model={self.model!r}, key={'set' if self.api_key else 'none'})"

    def _complete(self, prompt: str) -> str:
        body = json.dumps({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
        }).encode()  # fmt: skip
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url.rstrip('/')}/chat/completions"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                doc = json.loads(response.read())
            return doc["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as err:
            if err.code in REFUSED_KEY_STATUSES:
                given = "the key of objectHalbench.judgeSecretRef" if self.api_key else "no key (judgeSecretRef is unset)"
                raise BadInput(f"judge {url} refused the request (HTTP {err.code}) with {given}") from err
            raise JudgeError(f"judge {url} (model {self.model}) failed: {err}") from err
        except (urllib.error.URLError, OSError, KeyError, IndexError, TypeError, json.JSONDecodeError) as err:
            raise JudgeError(f"judge {url} (model {self.model}) failed: {err}") from err

    def objects_named(self, response: str) -> list[str]:
        """The judge's list of objects, as it wrote them."""
        content = self._complete(PROMPT.format(response=response))
        match = re.search(r"\[.*\]", content, flags=re.DOTALL)  # tolerate prose around the array
        try:
            items = json.loads(match.group(0)) if match else None
        except json.JSONDecodeError:
            items = None
        if not isinstance(items, list):
            raise JudgeError(f"judge {self.base_url} did not answer a JSON list: {content[:200]!r}")
        return [str(item) for item in items]

    def mentions(self, response: str, extractor: MentionExtractor) -> list[str]:
        """Canonical objects of the judge's list (names outside the table are dropped)."""
        return [m for name in self.objects_named(response) for m in extractor.mentions(name)[:1]]
