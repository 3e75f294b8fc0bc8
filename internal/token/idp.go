package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxIdPResponseBytes bounds what an IdP may send back.
const maxIdPResponseBytes = 1 << 20

// idpClient calls one processor's IdP endpoints and measures them. Each
// call has IdPFetchTimeout; the processor's calls share one circuit
// breaker (nil: none).
type idpClient struct {
	processor string
	http      *http.Client
	metrics   *Metrics
	breaker   *breaker
}

// statusError is a non-2xx answer that is the IdP's verdict, not an
// outage. The body is left out: an IdP may echo what it was sent.
type statusError struct {
	status int
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d", e.status) }

func (c *idpClient) getJSON(ctx context.Context, endpoint, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	_, err = c.doJSON(req, endpoint, out)
	return err
}

// getBearer GETs u with raw as Bearer credentials; prepare, if set, adds
// headers.
func (c *idpClient) getBearer(ctx context.Context, endpoint, u, raw string, out any, prepare func(*http.Request)) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, errorf(ReasonInternal, c.processor, "%s request: %v", endpoint, err)
	}
	req.Header.Set("Authorization", "Bearer "+raw)
	if prepare != nil {
		prepare(req)
	}
	return c.doJSON(req, endpoint, out)
}

func (c *idpClient) postForm(ctx context.Context, endpoint, u string, form url.Values, out any, prepare func(*http.Request)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if prepare != nil {
		prepare(req)
	}
	_, err = c.doJSON(req, endpoint, out)
	return err
}

// doJSON sends req and decodes a JSON answer into out, returning the
// answer's headers. Network failures, 5xx and rate limits (429, or 403
// with X-RateLimit-Remaining: 0 or Retry-After, as GitHub does) become
// ReasonUnavailable: an outage, not a verdict on the token. Other non-2xx
// answers are returned as *statusError for the caller to interpret. The
// call gets IdPFetchTimeout. While the processor's breaker is open it is
// not made at all and fails at once as ReasonUnavailable.
func (c *idpClient) doJSON(req *http.Request, endpoint string, out any) (http.Header, error) {
	var probe bool
	if c.breaker != nil {
		var err error
		if probe, err = c.breaker.allow(); err != nil {
			c.metrics.observeIdP(c.processor, endpoint, "breaker_open", 0)
			return nil, errorf(ReasonUnavailable, c.processor, "%s endpoint not asked: %v", endpoint, err)
		}
	}
	parent := req.Context()
	ctx, cancel := context.WithTimeout(parent, IdPFetchTimeout)
	defer cancel()
	hdr, outcome, err := c.send(req.WithContext(ctx), endpoint, out)
	if c.breaker != nil {
		if outcome == callFailed && parent.Err() != nil {
			outcome = callAbandoned // the caller gave up, not the IdP
		}
		opened, closed := c.breaker.done(probe, outcome, err)
		switch {
		case opened:
			c.metrics.breakerOpen(c.processor, true)
		case closed:
			c.metrics.breakerOpen(c.processor, false)
		}
	}
	return hdr, err
}

// send is doJSON without the breaker; it says how the call went for the
// breaker: answered, or failed as an outage.
func (c *idpClient) send(req *http.Request, endpoint string, out any) (http.Header, callOutcome, error) {
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	outcome := "error"
	defer func() { c.metrics.observeIdP(c.processor, endpoint, outcome, time.Since(start)) }()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && req.Context().Err() != nil {
			outcome = "timeout"
			return nil, callFailed, errorf(ReasonUnavailable, c.processor, "%s endpoint did not answer in time (IdP calls get %s)", endpoint, IdPFetchTimeout)
		}
		return nil, callFailed, errorf(ReasonUnavailable, c.processor, "%s endpoint unreachable: %v", endpoint, redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIdPResponseBytes+1))
	if err != nil {
		if req.Context().Err() != nil {
			outcome = "timeout"
			return nil, callFailed, errorf(ReasonUnavailable, c.processor, "%s endpoint did not finish its answer in time (IdP calls get %s)", endpoint, IdPFetchTimeout)
		}
		return nil, callFailed, errorf(ReasonUnavailable, c.processor, "%s endpoint: reading answer: %v", endpoint, err)
	}
	outcome = fmt.Sprintf("%dxx", resp.StatusCode/100)
	rateLimited := resp.StatusCode == http.StatusTooManyRequests ||
		resp.StatusCode == http.StatusForbidden && (resp.Header.Get("X-RateLimit-Remaining") == "0" || resp.Header.Get("Retry-After") != "")
	switch {
	case rateLimited:
		// An answer: GitHub limits each user's token, and one person's
		// exhausted limit must not cut everyone off.
		return nil, callAnswered, errorf(ReasonUnavailable, c.processor, "%s endpoint: rate limit exceeded (HTTP %d)", endpoint, resp.StatusCode)
	case resp.StatusCode >= 500:
		return nil, callFailed, errorf(ReasonUnavailable, c.processor, "%s endpoint answered HTTP %d", endpoint, resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return resp.Header, callAnswered, &statusError{status: resp.StatusCode}
	}
	if len(body) > maxIdPResponseBytes {
		return nil, callFailed, errorf(ReasonUnavailable, c.processor, "%s endpoint answer is larger than %d bytes", endpoint, maxIdPResponseBytes)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return nil, callFailed, errorf(ReasonUnavailable, c.processor, "%s endpoint answered invalid JSON: %v", endpoint, err)
	}
	return resp.Header, callAnswered, nil
}

// redactURLError drops the URL from a *url.Error: a URL may carry a token
// in its query (Google's tokeninfo does).
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
