package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/virtconsole/virtconsole"

// TestDependencyRules enforces ARCHITECTURE.md's dependency rules on the
// shipped code (test files excluded) with go list.
func TestDependencyRules(t *testing.T) {
	std := map[string]bool{}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, isStd, _ := strings.Cut(line, " ")
		std[path] = isStd == "true"
	}
	out, err = exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	inside := func(p, dir string) bool { return p == module+"/"+dir || strings.HasPrefix(p, module+"/"+dir+"/") }
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	checked := 0
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "|", 3)
		pkg, imports, deps := parts[0], strings.Fields(parts[1]), strings.Fields(parts[2])
		checked++
		for _, d := range deps {
			switch {
			case inside(pkg, "protocols") && !std[d] && !inside(d, "protocols"):
				t.Errorf("%s depends on %s: protocols/... may use only the standard library and protocols", pkg, d)
			case inside(pkg, "resolver") && !inside(pkg, "resolver/libvirtresolver") && !std[d] && !inside(d, "protocols") && !inside(d, "resolver"):
				t.Errorf("%s depends on %s: resolver may use only the standard library and protocols", pkg, d)
			case !inside(pkg, "cmd") && inside(d, "cmd"):
				t.Errorf("%s depends on %s: only cmd/ wires packages together", pkg, d)
			}
		}
		for _, i := range imports {
			switch {
			case strings.HasPrefix(i, "github.com/gorilla/websocket"):
				t.Errorf("%s imports %s: the product's websocket is tunnel/wsconn's own codec; gorilla is the tests' reference", pkg, i)
			case strings.HasPrefix(i, "golang.org/x/term") && !inside(pkg, "cmd"):
				t.Errorf("%s imports %s: only the CLI may", pkg, i)
			case strings.HasPrefix(i, "github.com/spf13/cobra") && !inside(pkg, "cmd"):
				t.Errorf("%s imports %s: only cmd/ may", pkg, i)
			case strings.HasPrefix(i, "github.com/prometheus/") && !inside(pkg, "tunnel/proxy/proxymetrics"):
				t.Errorf("%s imports %s: only tunnel/proxy/proxymetrics may (metrics come from the proxy's Observer)", pkg, i)
			case (strings.HasPrefix(i, "github.com/digitalocean/go-libvirt") || strings.HasPrefix(i, "libvirt.org/go/libvirtxml")) && !inside(pkg, "resolver/libvirtresolver"):
				t.Errorf("%s imports %s: only resolver/libvirtresolver may", pkg, i)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("go list returned only %d packages; the check did not run", checked)
	}
}
