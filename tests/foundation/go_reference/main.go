// Command go_reference answers the cases of tests/foundation/go_reference.py with the Go code
// kubectl and the kubelet run (Kubernetes v1.32's vendored copies):
//
//   - yaml: what kubectl's file reader makes of a file (cli-runtime resource/visitor.go
//     StreamVisitor: apimachinery util/yaml NewYAMLOrJSONDecoder, whose YAML documents go
//     through sigs.k8s.io/yaml YAMLToJSON; empty and null documents skipped);
//   - quantities: resource.ParseQuantity (apimachinery api/resource) and the exact value;
//   - images: reference.ParseNormalizedNamed (github.com/distribution/reference), as the
//     kubelet parses a container's image.
//
// It reads {"yaml": [...], "quantities": [...], "images": [...]} on stdin and writes the
// answers as JSON. Build it inside a Kubernetes v1.32 source tree with its vendor/ directory
// (e.g. openshift/microshift release-4.19 deps/github.com/openshift/kubernetes), offline:
//
//	mkdir cmd/go-reference && cp main.go cmd/go-reference/
//	CGO_ENABLED=0 GOFLAGS=-mod=vendor GOPROXY=off go build -o go-reference ./cmd/go-reference
package main

import (
	"bytes"
	// go-digest accepts an algorithm only if its hash is linked into the binary
	// (Algorithm.Available): the kubelet links both through crypto/tls.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/distribution/reference"
	"k8s.io/apimachinery/pkg/api/resource"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

type answers struct {
	Yaml       map[string]interface{} `json:"yaml"`
	Quantities map[string]interface{} `json:"quantities"`
	Images     map[string]interface{} `json:"images"`
}

func main() {
	var in struct {
		Yaml       []string `json:"yaml"`
		Quantities []string `json:"quantities"`
		Images     []string `json:"images"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	out := answers{map[string]interface{}{}, map[string]interface{}{}, map[string]interface{}{}}
	for _, text := range in.Yaml {
		out.Yaml[text] = stream(text)
	}
	for _, s := range in.Quantities {
		q, err := resource.ParseQuantity(s)
		if err != nil {
			out.Quantities[s] = map[string]string{"error": err.Error()}
		} else {
			out.Quantities[s] = map[string]string{"value": q.AsDec().String()}
		}
	}
	for _, s := range in.Images {
		named, err := reference.ParseNormalizedNamed(s)
		if err != nil {
			out.Images[s] = map[string]string{"error": err.Error()}
		} else {
			out.Images[s] = map[string]string{"name": named.String()}
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}

// stream is StreamVisitor.Visit up to the point where each object is decoded.
func stream(text string) map[string]interface{} {
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(text)), 4096)
	docs := []json.RawMessage{}
	for {
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			if err == io.EOF {
				return map[string]interface{}{"documents": docs}
			}
			return map[string]interface{}{"documents": docs, "error": fmt.Sprint(err)}
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
			continue
		}
		docs = append(docs, raw)
	}
}
