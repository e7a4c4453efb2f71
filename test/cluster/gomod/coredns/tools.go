//go:build tools

// Package tools pins the CoreDNS command the test cluster builds; nothing here is compiled.
package tools

import _ "github.com/coredns/coredns"
