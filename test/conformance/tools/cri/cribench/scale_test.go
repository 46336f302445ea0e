package main

import (
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	ten := []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	for _, c := range []struct {
		v    []float64
		p    float64
		want float64
	}{
		{ten, 10, 1}, {ten, 50, 5}, {ten, 90, 9}, {ten, 99, 10},
		{[]float64{3, 1, 2}, 10, 1}, {[]float64{3, 1, 2}, 90, 3},
		{[]float64{7}, 10, 7}, {[]float64{7}, 90, 7},
	} {
		if got := percentile(c.v, c.p); got != c.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.v, c.p, got, c.want)
		}
	}
	var d []time.Duration
	for i := 1; i <= 200; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if got := pctl(d, 99); got != 198*time.Millisecond {
		t.Errorf("p99 of 1..200 ms = %v, want 198ms", got)
	}
	if got := pctl(d, 50); got != 100*time.Millisecond {
		t.Errorf("p50 of 1..200 ms = %v, want 100ms", got)
	}
}

func TestSpreadCell(t *testing.T) {
	if got := spread(mkStat([]float64{5}, ""), "ms"); got != "—" {
		t.Errorf("one sample: %q, want —", got)
	}
	if got := spread(mkStat([]float64{12.5, 3, 40}, ""), "ms"); got != "3.00–40.0 ms" {
		t.Errorf("three samples: %q", got)
	}
	if got := spread(mkStat([]float64{2048, 4096}, ""), "kB"); got != "2.0–4.0 MiB" {
		t.Errorf("kB: %q", got)
	}
}

func TestPoolBoundsConcurrency(t *testing.T) {
	var inFlight, peak, runs atomic.Int64
	seen := make([]atomic.Int32, 50)
	boom := errors.New("boom")
	err := pool(len(seen), 4, func(i int) error {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		inFlight.Add(-1)
		runs.Add(1)
		seen[i].Add(1)
		if i == 17 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom", err)
	}
	if p := peak.Load(); p != 4 {
		t.Errorf("peak in flight = %d, want 4", p)
	}
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Errorf("item %d ran %d times", i, n)
		}
	}
}

// The readings are of a real process: this one.
func TestProcCPUCountsBusyTime(t *testing.T) {
	c0, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for t0 := time.Now(); time.Since(t0) < 300*time.Millisecond; {
	}
	c1, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// at least a third of the busy loop, even on a loaded machine
	if d := c1 - c0; d < 0.1 || d > 5 {
		t.Errorf("CPU over a 300 ms busy loop: %.2f s", d)
	}
}

func TestRSSPeakSeesAGrowthThatIsFreedAgain(t *testing.T) {
	base, err := statusKB(os.Getpid(), "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	p := watchRSS(os.Getpid())
	b := make([]byte, 64<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	time.Sleep(50 * time.Millisecond)
	b = nil
	peak, err := p.end()
	if err != nil {
		t.Fatal(err)
	}
	if peak < base+60<<10 {
		t.Errorf("peak %d kB, want >= %d kB (base %d kB + 64 MiB touched)", peak, base+60<<10, base)
	}
	_ = b
}
