//go:build tools

// Package tools pins sigs.k8s.io/cri-tools v1.37.0: run.sh builds critest
// from it with `go test -c sigs.k8s.io/cri-tools/cmd/critest`.
package tools

import _ "sigs.k8s.io/cri-tools/cmd/critest"
