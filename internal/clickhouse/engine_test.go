package clickhouse

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/url"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/chdb"
)

// fakeEngine records what the Querier asks of the engine.
type fakeEngine struct {
	sql, format  string
	settings     chdb.Settings
	body         string
	err, bodyErr error
}

func (f *fakeEngine) Query(_ context.Context, sql, format string, s chdb.Settings) (io.ReadCloser, error) {
	f.sql, f.format, f.settings = sql, format, s
	if f.err != nil {
		return nil, f.err
	}
	return io.NopCloser(io.MultiReader(strings.NewReader(f.body), errReader{f.bodyErr})), nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) {
	if r.err == nil {
		return 0, io.EOF
	}
	return 0, r.err
}

func TestQuerierOnEngine(t *testing.T) {
	f := &fakeEngine{body: "1\nUInt8\n1\n"}
	q := &Querier{Engine: f, Fixed: map[string]string{"max_threads": "2"}}
	up := &Upstream{Settings: map[string]string{"quota_key": "alice"}}
	body, header, err := q.Query(context.Background(), up, "SELECT 1", url.Values{
		"default_format": {"TabSeparatedWithNamesAndTypes"}, "readonly": {"1"}, "max_execution_time": {"30"},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(body)
	body.Close()
	if string(out) != f.body || header != nil {
		t.Errorf("body %q, header %v", out, header)
	}
	want := map[string]string{"max_execution_time": "30", "max_threads": "2", "quota_key": "alice"}
	if f.sql != "SELECT 1" || f.format != "TabSeparatedWithNamesAndTypes" || f.settings.Readonly != 1 || !maps.Equal(f.settings.Values, want) {
		t.Errorf("engine asked %q in %s with %+v", f.sql, f.format, f.settings)
	}

	// Without default_format, TabSeparated, as over HTTP.
	q.Query(context.Background(), &Upstream{}, "SELECT 2", nil)
	if f.format != "TabSeparated" || f.settings.Readonly != 0 {
		t.Errorf("defaults: %s %+v", f.format, f.settings)
	}
	if _, _, err := q.Query(context.Background(), &Upstream{}, "SELECT 2", url.Values{"readonly": {"yes"}}); err == nil {
		t.Error("readonly=yes accepted")
	}

	// The engine's refusals are *Exception, as ClickHouse's over HTTP, at
	// once or while streaming; other errors pass as they are.
	f.err = &chdb.Error{Code: 164, Message: "Code: 164. DB::Exception: default: Cannot execute query in readonly mode. (READONLY)"}
	_, _, err = q.Query(context.Background(), &Upstream{}, "INSERT", nil)
	var ex *Exception
	if !errors.As(err, &ex) || ex.Code != 164 || !strings.HasPrefix(ex.Message, "Code: 164.") {
		t.Errorf("refusal: %#v", err)
	}
	f.err, f.bodyErr = nil, &chdb.Error{Code: 395, Message: "Code: 395. boom"}
	body, _, err = q.Query(context.Background(), &Upstream{}, "SELECT", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(body)
	if !errors.As(err, &ex) || ex.Code != 395 {
		t.Errorf("error while streaming: %#v", err)
	}
	f.err = context.Canceled
	if _, _, err = q.Query(context.Background(), &Upstream{}, "SELECT", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("other error: %v", err)
	}
}
