package clickhouse

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// TokenEndpoint says where and as which client to exchange tokens of a
// processor.
type TokenEndpoint struct {
	URL          string
	ClientID     string
	ClientSecret string
}

// exchangeMode trades the caller's token for one whose audience is
// ClickHouse (RFC 8693) and caches it until it expires.
type exchangeMode struct {
	audience string
	endpoint func(ctx context.Context, processor string) (TokenEndpoint, error)
	http     *http.Client
	now      func() time.Time
	cache    *lru.Cache[[sha256.Size]byte, exchanged]
	group    singleflight.Group
}

type exchanged struct {
	token   string
	expires time.Time
}

// exchangeMargin renews an exchanged token this long before it expires.
const exchangeMargin = 30 * time.Second

func (m *exchangeMode) Upstream(ctx context.Context, c *Caller) (*Upstream, error) {
	key := sha256.Sum256([]byte(c.Token))
	if e, ok := m.cache.Get(key); ok && m.now().Add(exchangeMargin).Before(e.expires) {
		return bearerUpstream(e.token, c), nil
	}
	v, err, _ := m.group.Do(string(key[:]), func() (any, error) {
		e, err := m.exchange(context.WithoutCancel(ctx), c)
		if err != nil {
			return nil, err
		}
		m.cache.Add(key, e)
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return bearerUpstream(v.(exchanged).token, c), nil
}

// bearerUpstream sends tok; ClickHouse signs c in as their own user.
func bearerUpstream(tok string, c *Caller) *Upstream {
	return &Upstream{Header: http.Header{"Authorization": {"Bearer " + tok}}, Account: c.Principal.User}
}

func (m *exchangeMode) exchange(ctx context.Context, c *Caller) (exchanged, error) {
	ep, err := m.endpoint(ctx, c.Principal.Processor)
	if err != nil {
		return exchanged{}, &Error{Status: http.StatusBadGateway, Code: CodeNetworkError, Name: "NETWORK_ERROR", Msg: "clickgate: token exchange: " + err.Error()}
	}
	form := url.Values{
		"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":        {c.Token},
		"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
		"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":             {m.audience},
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return exchanged{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(ep.ClientID), url.QueryEscape(ep.ClientSecret))
	resp, err := m.http.Do(req)
	if err != nil {
		return exchanged{}, &Error{Status: http.StatusBadGateway, Code: CodeNetworkError, Name: "NETWORK_ERROR", Msg: "clickgate: token exchange: the IdP is unreachable"}
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil && resp.StatusCode == http.StatusOK {
		return exchanged{}, &Error{Status: http.StatusBadGateway, Code: CodeNetworkError, Name: "NETWORK_ERROR", Msg: "clickgate: token exchange: the IdP answered invalid JSON"}
	}
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return exchanged{}, &Error{Status: http.StatusBadGateway, Code: CodeNetworkError, Name: "NETWORK_ERROR",
			Msg: fmt.Sprintf("clickgate: token exchange: the IdP answered HTTP %d", resp.StatusCode)}
	case slices.Contains([]string{"invalid_client", "unauthorized_client", "invalid_target", "unsupported_grant_type"}, body.Error):
		// clickgate's own client or configuration, not the caller, is at fault.
		return exchanged{}, &Error{Status: http.StatusBadGateway, Code: CodeNetworkError, Name: "NETWORK_ERROR",
			Msg: fmt.Sprintf("clickgate: token exchange is misconfigured: the IdP answered %q; check the processor's client_id, client_secret, its token-exchange grant and clickhouse.audience", clipCode(body.Error))}
	}
	if resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		// Only the OAuth error code: a description may echo what was sent.
		return exchanged{}, accessDenied("clickgate: the IdP refused to exchange the token for audience %q (HTTP %d, error %q)", m.audience, resp.StatusCode, clipCode(body.Error))
	}
	expires := m.now().Add(time.Duration(body.ExpiresIn) * time.Second)
	if body.ExpiresIn <= 0 {
		expires = m.now().Add(time.Minute)
	}
	if exp := c.Principal.Expiry; !exp.IsZero() && exp.Before(expires) {
		expires = exp
	}
	return exchanged{token: body.AccessToken, expires: expires}, nil
}

func clipCode(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

// ErrNoTokenEndpoint is returned for processors without a token endpoint.
var ErrNoTokenEndpoint = fmt.Errorf("the processor has no token endpoint; set token_url, or use an oidc processor")
