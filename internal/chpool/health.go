package chpool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Run checks the nodes until ctx ends: at once, then every
// Health.Interval. Until a node's first check it counts as up.
func (p *Pool) Run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check checks every node once, concurrently, and returns when all checks
// are done (each takes at most twice Health.Timeout). Use it for a first
// check before serving, or in check-config.
func (p *Pool) Check(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range p.nodes {
		wg.Go(func() {
			start := time.Now()
			r := p.check(ctx, n)
			if ctx.Err() != nil {
				return // stopping: the outcome says nothing about the node
			}
			p.apply(n, r, start)
		})
	}
	wg.Wait()
	p.mu.Lock()
	p.sweepSessions(time.Now())
	p.mu.Unlock()
}

type result struct {
	up, lagging bool
	delay       time.Duration
	reason      string
}

func (p *Pool) apply(n *node, r result, start time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	n.checked = now
	if r.up && n.downAt.After(start) {
		return // a request found it unreachable while the check ran
	}
	p.setState(n, r.up, r.lagging, r.delay, r.reason, now)
}

// check asks a node GET /ping and, with MaxReplicaDelay set, GET
// /replicas_status?verbose=1.
func (p *Pool) check(ctx context.Context, n *node) result {
	status, text, err := p.get(ctx, n, "/ping", "")
	if err != nil {
		return result{reason: "GET /ping: " + err.Error()}
	}
	if status != http.StatusOK || strings.TrimSpace(text) != "Ok." {
		return result{reason: fmt.Sprintf("GET /ping answered %d %q", status, clip(text))}
	}
	if p.maxDelay <= 0 {
		return result{up: true}
	}
	status, text, err = p.get(ctx, n, "/replicas_status", "verbose=1")
	if err != nil {
		return result{up: true, lagging: true, reason: "GET /replicas_status: " + err.Error()}
	}
	delay, readonly, err := parseReplicasStatus(status, text)
	switch {
	case err != nil:
		return result{up: true, lagging: true, reason: err.Error()}
	case readonly != "":
		return result{up: true, lagging: true, delay: delay, reason: "replica " + readonly + " is readonly (it lost ZooKeeper/Keeper)"}
	case delay > p.maxDelay:
		return result{up: true, lagging: true, delay: delay,
			reason: fmt.Sprintf("replica delay %s > clickhouse.health.max_replica_delay = %s", fmtDuration(delay), fmtDuration(p.maxDelay))}
	}
	return result{up: true, delay: delay}
}

func (p *Pool) get(ctx context.Context, n *node, path, query string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	u := *n.url
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	u.RawQuery = query
	u.Fragment = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, "", fmt.Errorf("no answer within clickhouse.health.timeout = %s", fmtDuration(p.timeout))
		}
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, string(b), nil
}

// A line of /replicas_status?verbose=1, one per replicated table:
//
//	db.table:\tAbsolute delay: 360. Relative delay: 360.
//	db.table:\tis readonly.
//
// (names back-quoted when they need it). ClickHouse answers 200, or 503
// since 20.x when a table lags more than its min_absolute_delay_to_close;
// without verbose=1 a fine server answers "Ok.\n". No line (no replicated
// table) means no delay.
var delayLine = regexp.MustCompile(`^(.*):\tAbsolute delay: (\d+)\. Relative delay: (\d+)\.\s*$`)

// parseReplicasStatus returns the largest absolute delay of an answer of
// /replicas_status?verbose=1, or a readonly table's name.
func parseReplicasStatus(status int, text string) (delay time.Duration, readonly string, err error) {
	if status != http.StatusOK && status != http.StatusServiceUnavailable {
		return 0, "", fmt.Errorf("GET /replicas_status answered %d %q", status, clip(text))
	}
	if strings.TrimSpace(text) == "Ok." {
		return 0, "", nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	lines := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		lines++
		if m := delayLine.FindStringSubmatch(line); m != nil {
			s, err := strconv.ParseInt(m[2], 10, 64)
			if err != nil {
				return 0, "", fmt.Errorf("GET /replicas_status: %q: %v", clip(line), err)
			}
			delay = max(delay, time.Duration(s)*time.Second)
			continue
		}
		if name, ok := strings.CutSuffix(strings.TrimSpace(line), ":\tis readonly."); ok && readonly == "" {
			readonly = name
			continue
		}
		return 0, "", fmt.Errorf("GET /replicas_status answered %d with a line clickgate does not know: %q", status, clip(line))
	}
	if status == http.StatusServiceUnavailable && lines == 0 {
		return 0, "", fmt.Errorf("GET /replicas_status answered 503 %q", clip(text))
	}
	return delay, readonly, nil
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
