// Command nmeter stands in for busybox's nmeter applet, which Debian's
// busybox leaves out and the node e2e suite's container lifecycle specs
// call to read the clock with milliseconds (`nmeter -d0 '%3t' | head -n1`).
// It implements the one directive they use, %[N]t (the time of day with N
// decimals), copies other text, and prints a line every -d milliseconds
// until its output is closed, as the applet does.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	// Parsed by hand: the applet takes its delay glued to the flag (-d0).
	delay, format := 1000, ""
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case strings.HasPrefix(a, "-d"):
			v := strings.TrimPrefix(a, "-d")
			if v == "" && i+1 < len(args) {
				i++
				v = args[i]
			}
			d, err := strconv.Atoi(v)
			if err != nil {
				fmt.Fprintf(os.Stderr, "nmeter: bad delay %q\n", v)
				os.Exit(2)
			}
			delay = d
		case format == "":
			format = a
		default:
			fmt.Fprintln(os.Stderr, "usage: nmeter [-dMSEC] FORMAT")
			os.Exit(2)
		}
	}
	if format == "" {
		fmt.Fprintln(os.Stderr, "usage: nmeter [-dMSEC] FORMAT")
		os.Exit(2)
	}
	for {
		if _, err := fmt.Println(render(format, time.Now())); err != nil {
			os.Exit(0) // the reader went away (head -n1)
		}
		time.Sleep(time.Duration(max(delay, 1)) * time.Millisecond)
	}
}

func render(format string, now time.Time) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 >= len(format) {
			b.WriteByte(format[i])
			continue
		}
		j, decimals := i+1, 0
		if format[j] >= '0' && format[j] <= '9' {
			decimals = int(format[j] - '0')
			j++
		}
		if j < len(format) && format[j] == 't' {
			b.WriteString(now.Format("15:04:05"))
			if decimals > 0 {
				b.WriteString(now.Format(".000000000")[:decimals+1])
			}
			i = j
			continue
		}
		b.WriteByte(format[i])
	}
	return b.String()
}
