package keyed

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockExcludesOnlyItsKey(t *testing.T) {
	var k Mutex
	unlockA := k.Lock("a")
	got := make(chan string, 2)
	go func() { u := k.Lock("b"); got <- "b"; u() }()
	go func() { u := k.RLock("a"); got <- "a"; u() }()
	if v := <-got; v != "b" {
		t.Fatalf("%s got through first; want b (a is held)", v)
	}
	select {
	case <-got:
		t.Fatal("RLock(a) got through while a was held")
	case <-time.After(50 * time.Millisecond):
	}
	unlockA()
	if v := <-got; v != "a" {
		t.Fatalf("got %s, want a", v)
	}
}

func TestReadersShareAndKeysAreDropped(t *testing.T) {
	var k Mutex
	var in, most atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := k.RLock("img")
			n := in.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			in.Add(-1)
			u()
		}()
	}
	wg.Wait()
	if most.Load() < 2 {
		t.Fatalf("at most %d readers at once; RLock holders must share", most.Load())
	}
	if n := k.held(); n != 0 {
		t.Fatalf("%d keys kept after every holder released", n)
	}
}

func TestUsersCountsHoldersAndWaiters(t *testing.T) {
	var k Mutex
	if n := k.Users("a"); n != 0 {
		t.Fatalf("free key: %d users", n)
	}
	unlock := k.Lock("a")
	done := make(chan struct{})
	go func() { k.Lock("a")(); close(done) }()
	for k.Users("a") != 2 {
		runtime.Gosched()
	}
	unlock()
	<-done
	if n := k.Users("a"); n != 0 {
		t.Fatalf("after both: %d users", n)
	}
}
