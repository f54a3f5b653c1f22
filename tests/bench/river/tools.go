//go:build tools

// Only here so that the module requires the River CLI; never compiled.
package tools

import _ "github.com/riverqueue/river/cmd/river"
