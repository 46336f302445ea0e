// Command junitsum turns the JUnit report of a ginkgo v2 run of the node
// e2e suite into a summary: one closing line
//
//	node-e2e: N passed, N failed, N skipped
//
// then every spec that ran or was skipped at run time with its verdict,
// failures first with their message. Specs the focus/skip filters left out
// are counted apart ("not selected"), so the counts say what the suite
// really checked. Exit status: 0 when no spec failed, 1 when one did, 2 when
// the report is unreadable.
package main

import (
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

type message struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

type testCase struct {
	Name    string   `xml:"name,attr"`
	Status  string   `xml:"status,attr"`
	Time    float64  `xml:"time,attr"`
	Failure *message `xml:"failure"`
	Error   *message `xml:"error"`
	Skipped *message `xml:"skipped"`
}

type report struct {
	Suites []struct {
		Cases []testCase `xml:"testcase"`
	} `xml:"testsuite"`
}

func main() {
	junit := flag.String("junit", "", "JUnit report written by ginkgo --junit-report")
	seconds := flag.Int("seconds", 0, "wall time of the run, for the header")
	nodes := flag.Int("nodes", 0, "ginkgo parallel processes, for the header")
	flag.Parse()
	data, err := os.ReadFile(*junit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "junitsum:", err)
		os.Exit(2)
	}
	var r report
	if err := xml.Unmarshal(data, &r); err != nil {
		fmt.Fprintf(os.Stderr, "junitsum: %s: %v\n", *junit, err)
		os.Exit(2)
	}
	var passed, failed, skipped, notSelected []testCase
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			// Suite-level nodes ([SynchronizedBeforeSuite] and the like)
			// count only when they fail: then every spec behind them did not run.
			suiteNode := strings.HasPrefix(c.Name, "[") && !strings.HasPrefix(c.Name, "[It]")
			switch {
			case c.Failure != nil || c.Error != nil || c.Status == "failed" || c.Status == "panicked" ||
				c.Status == "interrupted" || c.Status == "aborted" || c.Status == "timedout":
				failed = append(failed, c)
			case suiteNode:
			case c.Status == "passed":
				passed = append(passed, c)
			// ginkgo writes message="skipped" for a spec the filters left
			// out and "skipped - REASON" for one skipped while it ran.
			case c.Skipped != nil && strings.TrimSpace(c.Skipped.Message) != "" &&
				strings.TrimSpace(c.Skipped.Message) != "skipped":
				skipped = append(skipped, c)
			case c.Status == "skipped" || c.Status == "pending" || c.Skipped != nil:
				notSelected = append(notSelected, c)
			default:
				passed = append(passed, c)
			}
		}
	}
	byName := func(l []testCase) {
		sort.Slice(l, func(i, j int) bool { return l[i].Name < l[j].Name })
	}
	byName(passed)
	byName(failed)
	byName(skipped)
	fmt.Printf("node-e2e: %d passed, %d failed, %d skipped\n", len(passed), len(failed), len(skipped))
	fmt.Printf("(%d specs not selected by focus/skip; wall time %ds; %d ginkgo processes)\n\n",
		len(notSelected), *seconds, *nodes)
	for _, c := range failed {
		fmt.Printf("FAILED  %s\n", c.Name)
		m := c.Failure
		if m == nil {
			m = c.Error
		}
		if m != nil {
			fmt.Printf("        %s\n", oneLine(firstNonEmpty(m.Message, m.Text), 600))
		}
	}
	for _, c := range skipped {
		fmt.Printf("SKIPPED %s\n        %s\n", c.Name, oneLine(firstNonEmpty(c.Skipped.Message, c.Skipped.Text), 300))
	}
	for _, c := range passed {
		fmt.Printf("PASSED  %s (%.0fs)\n", c.Name, c.Time)
	}
	if len(failed) > 0 {
		os.Exit(1)
	}
}

func firstNonEmpty(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + " …"
	}
	return s
}
