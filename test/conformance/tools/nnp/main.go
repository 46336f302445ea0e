// Command nnp replaces kubernetes' test/images/nonewprivs: installed
// setuid-root in the nonewprivs image, it prints the effective uid, which
// stays the caller's uid when no_new_privs is set.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
