// Package keyed holds read-write mutexes created on demand, one per key
// (an image ID, a container ID), and dropped when no one holds or waits
// for them.
package keyed

import "sync"

// Mutex is a set of read-write mutexes, one per key. The zero value is
// ready to use.
type Mutex struct {
	mu    sync.Mutex
	locks map[string]*entry
}

type entry struct {
	mu   sync.RWMutex
	refs int
}

// Lock holds key exclusively; the returned func releases it.
func (k *Mutex) Lock(key string) func() {
	e := k.entry(key)
	e.mu.Lock()
	return k.release(key, e, e.mu.Unlock)
}

// RLock holds key shared: any number of RLock holders, but no Lock.
func (k *Mutex) RLock(key string) func() {
	e := k.entry(key)
	e.mu.RLock()
	return k.release(key, e, e.mu.RUnlock)
}

func (k *Mutex) entry(key string) *entry {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*entry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &entry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	return e
}

func (k *Mutex) release(key string, e *entry, unlock func()) func() {
	return func() {
		unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// held is how many keys have holders or waiters (for tests).
func (k *Mutex) held() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.locks)
}

// Users is how many callers hold key or wait for it: 0 when it is free.
// Tests use it to see that a caller is waiting, without a timed guess.
func (k *Mutex) Users(key string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.locks[key]; e != nil {
		return e.refs
	}
	return 0
}
