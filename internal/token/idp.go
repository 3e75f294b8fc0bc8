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

// idpClient calls one processor's IdP endpoints and measures them.
type idpClient struct {
	processor string
	http      *http.Client
	metrics   *Metrics
}

// statusError is a non-2xx answer that is the IdP's verdict, not an outage.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	if e.body != "" {
		return fmt.Sprintf("HTTP %d: %s", e.status, e.body)
	}
	return fmt.Sprintf("HTTP %d", e.status)
}

func (c *idpClient) getJSON(ctx context.Context, endpoint, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
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
	return c.doJSON(req, endpoint, out)
}

// doJSON sends req and decodes a JSON answer into out. Network failures,
// 429 and 5xx become ReasonUnavailable; other non-2xx answers are returned
// as *statusError for the caller to interpret.
func (c *idpClient) doJSON(req *http.Request, endpoint string, out any) error {
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.http.Do(req)
	outcome := "error"
	defer func() { c.metrics.observeIdP(c.processor, endpoint, outcome, time.Since(start)) }()
	if err != nil {
		return errorf(ReasonUnavailable, c.processor, "%s endpoint unreachable: %v", endpoint, redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIdPResponseBytes+1))
	if err != nil {
		return errorf(ReasonUnavailable, c.processor, "%s endpoint: reading answer: %v", endpoint, err)
	}
	outcome = fmt.Sprintf("%dxx", resp.StatusCode/100)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return errorf(ReasonUnavailable, c.processor, "%s endpoint answered HTTP %d", endpoint, resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return &statusError{status: resp.StatusCode, body: snippet(body)}
	}
	if len(body) > maxIdPResponseBytes {
		return errorf(ReasonUnavailable, c.processor, "%s endpoint answer is larger than %d bytes", endpoint, maxIdPResponseBytes)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return errorf(ReasonUnavailable, c.processor, "%s endpoint answered invalid JSON: %v", endpoint, err)
	}
	return nil
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

// snippet keeps the start of an IdP's error body for messages, printable
// characters only.
func snippet(b []byte) string {
	const max = 120
	s := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, string(b))
	s = strings.TrimSpace(s)
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
