// Command critestsum reads the JUnit report that critest (ginkgo v2) writes
// and prints
//
//	critest: N passed, N failed, N skipped
//
// followed by one line per failed spec, marked expected (with the reason
// from the expected-failures file) or UNEXPECTED. It exits 0 when every
// failure is expected, 1 when one is not, 2 when the report is missing or
// holds no specs.
//
// Expected-failures file: one entry per line, "#" starts a comment line.
//
//	[@key=value ...] SUBSTRING OF THE SPEC NAME [~ MESSAGE REGEXP] | reason
//
// An entry applies when every @key=value condition equals a -cond key=value
// given on the command line (e.g. @flavor=static). With "~ REGEXP", the
// failure counts as expected only when its message matches (Go regexp), so
// a listed spec that fails for another reason is still reported.
package main

import (
	"bufio"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
)

type testCase struct {
	Name    string `xml:"name,attr"`
	Status  string `xml:"status,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
	} `xml:"error"`
}

type report struct {
	Suites []struct {
		Cases []testCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type expectation struct {
	conds  map[string]string
	substr string
	msgRE  *regexp.Regexp // nil: any message
	reason string
	hit    bool // a matching spec failed
	passed bool // a matching spec passed
}

type condFlags map[string]string

func (c condFlags) String() string { return fmt.Sprint(map[string]string(c)) }
func (c condFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want key=value, got %q", s)
	}
	c[k] = v
	return nil
}

func loadExpected(path string, conds condFlags) ([]*expectation, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*expectation
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		spec, reason, ok := strings.Cut(line, "|")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want \"SPEC SUBSTRING | reason\"", path, n)
		}
		e := &expectation{conds: map[string]string{}, reason: strings.TrimSpace(reason)}
		spec = strings.TrimSpace(spec)
		for strings.HasPrefix(spec, "@") {
			tok, rest, _ := strings.Cut(spec, " ")
			k, v, ok := strings.Cut(tok[1:], "=")
			if !ok {
				return nil, fmt.Errorf("%s:%d: condition %q is not @key=value", path, n, tok)
			}
			e.conds[k] = v
			spec = strings.TrimSpace(rest)
		}
		if sub, re, ok := strings.Cut(spec, " ~ "); ok {
			spec = strings.TrimSpace(sub)
			if e.msgRE, err = regexp.Compile("(?s)" + strings.TrimSpace(re)); err != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, n, err)
			}
		}
		e.substr = spec
		if e.substr == "" || e.reason == "" {
			return nil, fmt.Errorf("%s:%d: empty spec or reason", path, n)
		}
		applies := true
		for k, v := range e.conds {
			if conds[k] != v {
				applies = false
			}
		}
		if applies {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

var rpcErrRE = regexp.MustCompile(`rpc error: code = (\w+) desc = ([^{]*)`)

// oneLine squeezes a multi-line failure message into one short line; a
// gRPC status becomes "what failed: Code: desc".
func oneLine(s string) string {
	if m := rpcErrRE.FindStringSubmatch(s); m != nil {
		what, _, _ := strings.Cut(s, "Unexpected error")
		s = strings.TrimSpace(what + " " + m[1] + ": " + m[2])
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 240 {
		s = s[:240] + "..."
	}
	return s
}

func main() {
	junit := flag.String("junit", "", "JUnit XML report written by critest -ginkgo.junit-report")
	expectedPath := flag.String("expected", "", "expected-failures file")
	failuresOut := flag.String("failures-out", "", "also write the failed spec names here, one a line")
	minPassed := flag.Int("min-passed", 0, "fail when fewer specs pass (specs that should run were skipped)")
	conds := condFlags{}
	flag.Var(conds, "cond", "key=value condition for @key=value entries (repeatable)")
	flag.Parse()

	raw, err := os.ReadFile(*junit)
	if err != nil {
		fmt.Fprintf(os.Stderr, "critestsum: %v\n", err)
		fmt.Println("critest: 0 passed, 0 failed, 0 skipped (no report)")
		os.Exit(2)
	}
	var rep report
	if err := xml.Unmarshal(raw, &rep); err != nil {
		fmt.Fprintf(os.Stderr, "critestsum: %s: %v\n", *junit, err)
		fmt.Println("critest: 0 passed, 0 failed, 0 skipped (unreadable report)")
		os.Exit(2)
	}
	exp, err := loadExpected(*expectedPath, conds)
	if err != nil {
		fmt.Fprintf(os.Stderr, "critestsum: %v\n", err)
		os.Exit(2)
	}

	var passed, skipped, specs int
	type failure struct{ name, status, msg string }
	var failed []failure
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			isIt := strings.HasPrefix(c.Name, "[It]")
			if isIt {
				specs++
			}
			switch c.Status {
			case "passed":
				if isIt {
					passed++
					for _, e := range exp {
						if strings.Contains(c.Name, e.substr) {
							e.passed = true
						}
					}
				}
			case "skipped", "pending":
				if isIt {
					skipped++
				}
			default: // failed, panicked, timedout, interrupted, aborted
				msg := ""
				if c.Failure != nil {
					msg = c.Failure.Message
				} else if c.Error != nil {
					msg = c.Error.Message
				}
				// suite nodes ([BeforeSuite], ...) count as failures too
				failed = append(failed, failure{strings.TrimSpace(strings.TrimPrefix(c.Name, "[It]")), c.Status, msg})
			}
		}
	}
	fmt.Printf("critest: %d passed, %d failed, %d skipped\n", passed, len(failed), skipped)
	var names strings.Builder
	unexpected := 0
	for _, f := range failed {
		names.WriteString(f.name + "\n")
		var match, listed *expectation
		for _, e := range exp {
			if strings.Contains(f.name, e.substr) {
				listed = e
				if e.msgRE == nil || e.msgRE.MatchString(f.msg) {
					match = e
					break
				}
			}
		}
		if match != nil {
			match.hit = true
			fmt.Printf("  %s (expected: %s)\n", f.name, match.reason)
			continue
		}
		unexpected++
		how := "UNEXPECTED " + f.status
		if listed != nil {
			how = "UNEXPECTED: listed as expected, but the message does not match /" + listed.msgRE.String() + "/"
		}
		fmt.Printf("  %s (%s: %s)\n", f.name, how, oneLine(f.msg))
	}
	for _, e := range exp {
		if !e.hit && e.passed {
			fmt.Printf("  note: expected failure passed, remove it from the list? %q\n", e.substr)
		}
	}
	if *failuresOut != "" {
		if err := os.WriteFile(*failuresOut, []byte(names.String()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "critestsum: %v\n", err)
		}
	}
	switch {
	case specs == 0:
		fmt.Println("critest: the report holds no specs")
		os.Exit(2)
	case unexpected > 0:
		fmt.Printf("critest: %d unexpected failure(s)\n", unexpected)
		os.Exit(1)
	case passed < *minPassed:
		fmt.Printf("critest: %d passed, fewer than the %d expected: specs that should run were skipped\n", passed, *minPassed)
		os.Exit(1)
	}
}
