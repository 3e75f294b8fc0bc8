package mcp

import (
	"context"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Tools for exploring data and schema cheaply (issue 16).
const (
	toolSampleRows   = "sample_rows"
	toolSearchSchema = "search_schema"
)

const (
	sampleRowsDefault    = 10
	sampleRowsMax        = 100
	searchLimitDefault   = 50
	searchLimitMax       = 1000
	searchWordsMax       = 20
	searchWordMaxBytes   = 256
	sampleAbsoluteRowsAt = 10000 // SAMPLE <k>: read about this many rows
)

type sampleArgs struct {
	tableArgs
	N int `json:"n,omitempty" jsonschema:"how many rows: 10 by default, at most 100"`
}

type searchArgs struct {
	Words string `json:"words" jsonschema:"words to look for, separated by spaces; each is a literal substring, matched case-insensitively"`
	Limit int    `json:"limit,omitempty" jsonschema:"at most this many matches: 50 by default, at most 1000"`
}

// SampleRows is sample_rows's answer: the rows, and whether they came
// from the table's sampling key (SAMPLE) or from its first parts (LIMIT).
type SampleRows struct {
	Result
	Sampled     bool   `json:"sampled"`
	SamplingKey string `json:"sampling_key,omitempty"`
}

func (s *Server) sampleRows(ctx context.Context, req *mcp.CallToolRequest, a sampleArgs) (*mcp.CallToolResult, *SampleRows, error) {
	n := a.N
	switch {
	case n == 0:
		n = sampleRowsDefault
	case n < 0:
		return nil, nil, fmt.Errorf("n is %d; ask for 1 to %d rows", n, sampleRowsMax)
	case n > sampleRowsMax:
		n = sampleRowsMax
	}
	ctx, done, c, err := begin(ctx, req.Extra)
	defer done()
	if err != nil {
		return nil, nil, err
	}
	if err := s.checkDatabase(ctx, c, a.Database); err != nil {
		return nil, nil, err
	}
	info, err := s.schemaInfo(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	keySQL, err := info.samplingKeySQL(a.Database, a.Table)
	if err != nil {
		return nil, nil, err
	}
	t, err := s.run(ctx, c, queryRun{sql: keySQL, maxRows: 1})
	if err != nil {
		return nil, nil, err
	}
	if t.RowCount == 0 {
		return nil, nil, fmt.Errorf("%w %s.%s that you can see", errNoTable, a.Database, a.Table)
	}
	key := ""
	if len(t.Rows[0]) > 1 {
		key, _ = t.Rows[0][1].(string)
	}
	sql, err := sampleRowsSQL(a.Database, a.Table, key != "", n)
	if err != nil {
		return nil, nil, err
	}
	res, err := s.run(ctx, c, queryRun{sql: sql})
	if err != nil {
		return nil, nil, err
	}
	out := &SampleRows{Result: *res, Sampled: key != "", SamplingKey: key}
	text := renderText(res)
	if out.Sampled {
		text += "\nRows from a sample of the table (SAMPLE BY " + key + "), not in any order."
	} else {
		text += "\nThe table has no sampling key: these are the first rows ClickHouse read, not a random sample."
	}
	if a.N > sampleRowsMax {
		text += fmt.Sprintf("\nn was %d; sample_rows returns at most %d rows (use run_query for more).", a.N, sampleRowsMax)
	}
	return textResult(text), out, nil
}

func (s *Server) searchSchema(ctx context.Context, req *mcp.CallToolRequest, a searchArgs) (*mcp.CallToolResult, *Result, error) {
	words := strings.Fields(a.Words)
	switch {
	case len(words) == 0:
		return nil, nil, fmt.Errorf("words is empty: give one or more words to look for")
	case len(words) > searchWordsMax:
		return nil, nil, fmt.Errorf("%d words; search_schema takes at most %d", len(words), searchWordsMax)
	}
	for _, w := range words {
		if len(w) > searchWordMaxBytes {
			return nil, nil, fmt.Errorf("a word of %d bytes; the limit is %d", len(w), searchWordMaxBytes)
		}
	}
	limit := a.Limit
	switch {
	case limit == 0:
		limit = searchLimitDefault
	case limit < 0:
		return nil, nil, fmt.Errorf("limit is %d; ask for 1 to %d matches", limit, searchLimitMax)
	case limit > searchLimitMax:
		limit = searchLimitMax
	}
	ctx, done, c, err := begin(ctx, req.Extra)
	defer done()
	if err != nil {
		return nil, nil, err
	}
	info, err := s.schemaInfo(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	sql := info.searchSchemaSQL(words, s.accessFor(c), limit)
	res, err := s.run(ctx, c, queryRun{sql: sql, maxRows: limit})
	if err != nil {
		return nil, nil, err
	}
	text := renderText(res)
	if res.RowCount == limit {
		text += fmt.Sprintf("\nThere may be more matches than these %d: use fewer or longer words, or a higher limit.", limit)
	}
	return textResult(text), res, nil
}
