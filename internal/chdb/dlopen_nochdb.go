//go:build nochdb

package chdb

import "fmt"

// open: this binary was built without the embedded engine (-tags nochdb,
// for a static binary: the container image), so chdb:// cannot be served.
func open() (*lib, error) {
	return nil, fmt.Errorf("%w: this clickgate was built without the embedded engine (-tags nochdb, as the container image is); use a ClickHouse server URL", ErrLibraryNotFound)
}
