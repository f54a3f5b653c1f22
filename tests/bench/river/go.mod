// The River CLI that tests/bench/executor.py runs beside kjb, pinned. The
// CLI is a module of its own that the Go proxy serves only by version (no
// version list, so no @latest): executor.py copies this module to a
// temporary directory and `go build`s the CLI there, into
// ~/.cache/kjb/river-<version>. To move the pin, change the version below,
// build once in a copy of this directory as executor.py does, and copy the
// go.sum it wrote back here.
module kjbriverbench

go 1.26.0

require github.com/riverqueue/river/cmd/river v0.47.0
