package e2e

import "os/exec"

// runCmd runs a command to completion, returning its combined output.
func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
