// Command etcd is the etcd server, built from the go.etcd.io/etcd/server/v3
// module. etcd's own main module cannot be `go install`ed (its go.mod has
// replace directives), so this wrapper calls the same entry point the
// upstream etcd binary does. Used only by scripts/local-cluster for tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
