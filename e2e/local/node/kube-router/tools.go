//go:build tools

// Package tools records the command this module builds, so that
// `go mod tidy` keeps every module it needs.
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
