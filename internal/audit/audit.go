// Package audit writes the session log: one JSON line per authentication
// event, modelled on ClickHouse's system.session_log.
package audit

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Event types, as in system.session_log.
const (
	LoginSuccess = "LoginSuccess"
	LoginFailure = "LoginFailure"
)

// Interfaces through which people authenticate.
const (
	InterfaceAuthEndpoint = "auth_endpoint"
	InterfaceWhoami       = "whoami"
	InterfaceGateway      = "gateway"
	InterfaceMCP          = "mcp"
	InterfaceBroker       = "oauth_broker" // upstream sign-ins through the OAuth broker
)

// Record is one session log line. It never holds a token or a secret.
type Record struct {
	Type                  string   `json:"type"`
	AuthID                string   `json:"auth_id"`
	EventTimeMicroseconds string   `json:"event_time_microseconds"`
	User                  string   `json:"user"`
	Subject               string   `json:"subject,omitempty"`
	Processor             string   `json:"processor,omitempty"`
	Roles                 []string `json:"roles"`
	ClientAddress         string   `json:"client_address"`
	ClientPort            int      `json:"client_port"`
	Interface             string   `json:"interface"`
	HTTPUserAgent         string   `json:"http_user_agent"`
	FailureReason         string   `json:"failure_reason,omitempty"`
}

// Log appends records to a writer. A nil *Log discards them.
type Log struct {
	mu  sync.Mutex
	enc *json.Encoder
	c   io.Closer
	now func() time.Time
}

// Open returns a Log writing to path: "" means off (nil), "-" stderr,
// anything else a file opened for appending with mode 0600.
func Open(path string) (*Log, error) {
	switch path {
	case "":
		return nil, nil
	case "-":
		return New(os.Stderr), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit.file: %w", err)
	}
	l := New(f)
	l.c = f
	return l, nil
}

// New returns a Log writing to w.
func New(w io.Writer) *Log {
	return &Log{enc: json.NewEncoder(w), now: time.Now}
}

// Write stamps r with a fresh auth_id and the time and appends it.
func (l *Log) Write(r Record) {
	if l == nil {
		return
	}
	r.AuthID = newUUID()
	// What a client sends is bounded here, for every writer of records.
	r.User, r.HTTPUserAgent = clip(r.User), clip(r.HTTPUserAgent)
	if r.Roles == nil {
		r.Roles = []string{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r.EventTimeMicroseconds = l.now().UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	_ = l.enc.Encode(r) // a full disk must not stop authentication
}

// maxClientText bounds client-sent fields (user, user agent) in a record.
const maxClientText = 256

func clip(s string) string {
	if len(s) > maxClientText {
		return s[:maxClientText]
	}
	return s
}

// Close closes the underlying file, if any.
func (l *Log) Close() error {
	if l == nil || l.c == nil {
		return nil
	}
	return l.c.Close()
}

// newUUID returns a random (version 4) UUID, as ClickHouse's auth_id.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
