// compose-check loads a compose file with compose-go, the parser Docker Compose
// itself uses, validating it against the Compose specification's schema, and
// prints the resolved project as JSON (or the error, exit 1). No Docker engine is
// needed. test/unit/compose.test.ts runs it on docker-compose.yml.
//
// Variables are interpolated as `docker compose` does: from the environment, then
// from each --env-file given, or else from .env beside the file when there is one
// (a required variable that is missing is an error, as compose reports it).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

const usage = "usage: compose-check [--env-file FILE]... COMPOSE_FILE"

func main() {
	var envFiles []string
	args := os.Args[1:]
	for len(args) > 1 && args[0] == "--env-file" {
		envFiles = append(envFiles, args[1])
		args = args[2:]
	}
	if len(args) != 1 || args[0] == "--env-file" {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	file, err := filepath.Abs(args[0])
	if err != nil {
		fail(err)
	}
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithOsEnv,
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithName("sagaflow"),
		cli.WithResolvedPaths(false),
	)
	if err != nil {
		fail(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := json.MarshalIndent(project, "", "  ")
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
