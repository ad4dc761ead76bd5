//go:build tools

// Package tools pins the Temporal programs sagaflow builds for its tests and its
// self-hosted cluster mode, in one module so that they share one set of
// dependency versions (the Temporal CLI's) and Go compiles what they share once:
// after the CLI, the server, temporal-sql-tool and the Web UI server are little
// more than a link each. dev/temporal.ts, dev/temporal-cluster.ts and
// dev/temporal-ui.ts run `go build -o <cache> <package>` here.
package tools

import (
	_ "github.com/temporalio/cli/cmd/temporal"
	_ "github.com/temporalio/ui-server/v2/cmd/server"
	_ "go.temporal.io/server/cmd/server"
	_ "go.temporal.io/server/cmd/tools/sql"
)
