// Command deploycheck answers, offline and with Docker's own code, two questions the
// deployment tests ask about the repository (no Docker engine is needed):
//
//	deploycheck context DIR     the files `docker build DIR` sends, one JSON object a line
//	deploycheck dockerfile FILE its stages and BuildKit's `docker build --check` findings, as JSON
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/cli/cli/command/image/build"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/go-archive"
	digest "github.com/opencontainers/go-digest"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: deploycheck context DIR | deploycheck dockerfile FILE")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "context":
		err = listContext(os.Args[2], os.Stdout)
	case "dockerfile":
		err = checkDockerfile(os.Args[2], os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploycheck:", err)
		os.Exit(1)
	}
}

type contextEntry struct {
	Path string `json:"path"`
	Type string `json:"type"` // file, dir, symlink, other
	Size int64  `json:"size"`
}

// listContext tars DIR exactly as the docker CLI does for `docker build DIR` (its
// .dockerignore reading, the Dockerfile and .dockerignore kept, moby's archiver)
// and prints what the tarball holds.
func listContext(dir string, out io.Writer) error {
	excludes, err := build.ReadDockerignore(dir)
	if err != nil {
		return err
	}
	if err := build.ValidateContextDirectory(dir, excludes); err != nil {
		return err
	}
	excludes = build.TrimBuildFilesFromExcludes(excludes, "Dockerfile", false)
	tarball, err := archive.TarWithOptions(dir, &archive.TarOptions{ExcludePatterns: excludes})
	if err != nil {
		return err
	}
	defer tarball.Close()
	reader := tar.NewReader(tarball)
	encoder := json.NewEncoder(out)
	for {
		header, err := reader.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		kind := "other"
		switch header.Typeflag {
		case tar.TypeReg:
			kind = "file"
		case tar.TypeDir:
			kind = "dir"
		case tar.TypeSymlink:
			kind = "symlink"
		}
		entry := contextEntry{Path: filepath.ToSlash(header.Name), Type: kind, Size: header.Size}
		if err := encoder.Encode(entry); err != nil {
			return err
		}
	}
}

type stage struct {
	Name     string        `json:"name"`
	Base     string        `json:"base"`  // as written
	Image    string        `json:"image"` // with the global ARGs' defaults put in
	Commands []instruction `json:"commands"`
}

type instruction struct {
	Name string `json:"name"` // upper case
	Text string `json:"text"` // as written, continuation lines joined
}

type finding struct {
	Rule        string `json:"rule"`
	Detail      string `json:"detail"`
	Description string `json:"description"`
}

type dockerfileReport struct {
	Stages   []stage   `json:"stages"`
	Warnings []finding `json:"warnings"`
	Error    string    `json:"error,omitempty"`
}

// offlineImages answers BuildKit's base-image lookups without a registry: every base
// is a Linux image with a PATH and one layer, which is all the checks need.
type offlineImages struct{}

func (offlineImages) ResolveImageConfig(
	_ context.Context, ref string, _ sourceresolver.Opt,
) (string, digest.Digest, []byte, error) {
	config := []byte(`{"architecture":"amd64","os":"linux",` +
		`"config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},` +
		`"rootfs":{"type":"layers","diff_ids":["sha256:` +
		"0000000000000000000000000000000000000000000000000000000000000000" + `"]}}`)
	return ref, "", config, nil
}

// checkDockerfile parses FILE with BuildKit's parser and runs the rules of
// `docker build --check` on every stage.
func checkDockerfile(file string, out io.Writer) error {
	source, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	ast, err := parser.Parse(bytes.NewReader(source))
	if err != nil {
		return err
	}
	parsed, globalArgs, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return err
	}
	defaults := []string{}
	for _, arg := range globalArgs {
		for _, kv := range arg.Args {
			if kv.Value != nil {
				defaults = append(defaults, kv.Key+"="+*kv.Value)
			}
		}
	}
	lex := shell.NewLex(ast.EscapeToken)
	report := dockerfileReport{Warnings: []finding{}}
	for _, s := range parsed {
		image, _, err := lex.ProcessWord(s.BaseName, shell.EnvsFromSlice(defaults))
		if err != nil {
			return err
		}
		st := stage{Name: s.Name, Base: s.BaseName, Image: image, Commands: []instruction{}}
		for _, command := range s.Commands {
			text := ""
			if source, ok := command.(fmt.Stringer); ok {
				text = source.String()
			}
			st.Commands = append(st.Commands, instruction{strings.ToUpper(command.Name()), text})
		}
		report.Stages = append(report.Stages, st)
	}
	sourceMap := llb.NewSourceMap(nil, filepath.Base(file), "Dockerfile", source)
	sourceMap.Definition = &llb.Definition{} // the lint results name the source by it
	results, err := dockerfile2llb.DockerfileLint(context.Background(), source, dockerfile2llb.ConvertOpt{
		SourceMap:    sourceMap,
		MetaResolver: offlineImages{},
	})
	if err != nil {
		return err
	}
	for _, w := range results.Warnings {
		report.Warnings = append(report.Warnings, finding{w.RuleName, w.Detail, w.Description})
	}
	if results.Error != nil {
		report.Error = results.Error.Message
	}
	encoder := json.NewEncoder(out)
	encoder.SetIndent("", "  ")
	return encoder.Encode(report)
}
