package audit

import (
	"io"
	"net"
	"sync"
	"testing"
)

// relay forwards TCP connections from a fixed local address to a
// ClickHouse server: the address the audit sink knows. down closes the
// listener and every connection (ClickHouse "goes away": connections
// refused); up listens again on the same port, forwarding to a server that
// may be another one. It is plumbing, not a fake: the bytes are
// ClickHouse's.
type relay struct {
	t    *testing.T
	addr string

	mu     sync.Mutex
	target string
	ln     net.Listener
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newRelay(t *testing.T, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	r.serve(ln, target)
	t.Cleanup(r.down)
	return r
}

func (r *relay) url() string { return "http://" + r.addr + "/" }

func (r *relay) serve(ln net.Listener, target string) {
	r.mu.Lock()
	r.ln, r.target = ln, target
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			to := r.target
			r.conns[c] = true
			r.mu.Unlock()
			go r.pipe(c, to)
		}
	}()
}

func (r *relay) pipe(c net.Conn, target string) {
	up, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	r.mu.Lock()
	r.conns[up] = true
	r.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	r.mu.Lock()
	delete(r.conns, c)
	delete(r.conns, up)
	r.mu.Unlock()
}

func (r *relay) down() {
	r.mu.Lock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *relay) up(target string) {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("relay: listening again on %s: %v", r.addr, err)
	}
	r.serve(ln, target)
}
