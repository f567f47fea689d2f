// Command kstatus prints the kstatus verdict of Kubernetes objects, as Flux computes it.
//
// It reads a JSON array of objects on stdin and writes one JSON object per input object on
// stdout, in order: {"status": ..., "message": ...} from sigs.k8s.io/cli-utils' status.Compute,
// and "flux" (status and message) from github.com/fluxcd/cli-utils, the fork Flux's
// kustomize-controller uses for `wait: true` and health checks. An object status.Compute
// cannot judge is reported with "error" set. Used by tests/packaging/test_kstatus.py.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	fluxstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

type result struct {
	verdict
	Flux verdict `json:"flux"`
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading stdin:", err)
		os.Exit(2)
	}
	// apimachinery's decoder reads whole numbers as int64, as the apiserver's clients do.
	var objects []map[string]any
	if err := utiljson.Unmarshal(data, &objects); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: stdin is not a JSON array of objects:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(objects))
	for _, object := range objects {
		var r result
		if res, err := status.Compute(&unstructured.Unstructured{Object: object}); err != nil {
			r.Error = err.Error()
		} else {
			r.Status, r.Message = res.Status.String(), res.Message
		}
		if res, err := fluxstatus.Compute(&unstructured.Unstructured{Object: object}); err != nil {
			r.Flux.Error = err.Error()
		} else {
			r.Flux.Status, r.Flux.Message = res.Status.String(), res.Message
		}
		results = append(results, r)
	}
	out := json.NewEncoder(os.Stdout)
	for _, r := range results {
		if err := out.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "kstatus:", err)
			os.Exit(1)
		}
	}
}
