package image

import "context"

// flight is one shared pull: its context belongs to no single caller.
type flight struct {
	ctx     context.Context
	cancel  context.CancelFunc
	waiters int
}

// shared runs fn once for every concurrent caller with the same key. fn's
// context is detached from any one caller: a caller that goes away stops
// waiting, and the pull is cancelled only when no caller is left, so one
// kubelet timing out does not fail the identical pull of another.
func (s *Service) shared(ctx context.Context, key string, fn func(context.Context) (any, error)) (v any, err error, callerGone bool) {
	s.flightMu.Lock()
	if s.flights == nil {
		s.flights = map[string]*flight{}
	}
	f := s.flights[key]
	if f == nil {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{ctx: fctx, cancel: cancel}
		s.flights[key] = f
	}
	f.waiters++
	// Under flightMu, so the flight this caller joined is the one whose
	// context a newly started fn uses.
	ch := s.pulls.DoChan(key, func() (any, error) {
		defer func() {
			s.flightMu.Lock()
			if s.flights[key] == f {
				delete(s.flights, key)
			}
			s.flightMu.Unlock()
			f.cancel()
		}()
		return fn(f.ctx)
	})
	s.flightMu.Unlock()

	select {
	case r := <-ch:
		s.leave(key, f, false)
		return r.Val, r.Err, false
	case <-ctx.Done():
		s.leave(key, f, true)
		return nil, context.Cause(ctx), true
	}
}

func (s *Service) leave(key string, f *flight, gone bool) {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	f.waiters--
	if f.waiters > 0 || !gone {
		return
	}
	// The last caller went away: stop the pull, and let a later caller
	// start afresh rather than join one being cancelled.
	f.cancel()
	if s.flights[key] == f {
		delete(s.flights, key)
	}
	s.pulls.Forget(key)
}
