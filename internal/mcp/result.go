package mcp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/clickgate/clickgate/internal/chsql"
)

// Column is a result column.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Result is a query result as tools return it.
type Result struct {
	Columns []Column `json:"columns"`
	Rows    [][]any  `json:"rows"`
	// RowCount is the number of rows returned (not the query's total).
	RowCount int `json:"row_count"`
	// Truncated says the result was cut at a limit, and why.
	Truncated       bool   `json:"truncated"`
	TruncatedReason string `json:"truncated_reason,omitempty"`
}

// headerAllowance is room for the column names and types lines.
const headerAllowance = 64 << 10

var errByteCap = errors.New("byte cap reached")

// errNotTSV means the answer is not TabSeparatedWithNamesAndTypes.
var errNotTSV = errors.New("the answer is not TabSeparatedWithNamesAndTypes")

// typeName matches a ClickHouse type such as Nullable(Decimal(10, 2)).
var typeName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*(\(.*\))?$`)

// readTSV reads TabSeparatedWithNamesAndTypes from r, stopping at
// maxRows rows or maxBytes bytes of result, whichever comes first; it
// never holds more than that in memory. The caller closes r, which
// cancels the rest of the query.
func readTSV(r io.Reader, maxRows, maxBytes int) (*Result, error) {
	// Nothing beyond the byte cap (plus room for the two header lines) is
	// ever read, so one enormous row cannot grow memory either.
	limited := &io.LimitedReader{R: r, N: int64(maxBytes) + headerAllowance}
	br := bufio.NewReaderSize(limited, 16<<10)
	readLine := func() (string, error) {
		line, err := br.ReadString('\n')
		if err == io.EOF && line != "" {
			if limited.N == 0 {
				return "", errByteCap // a row cut by the cap is dropped
			}
			err = nil
		}
		return strings.TrimSuffix(line, "\n"), err
	}
	names, err := readLine()
	if err == io.EOF {
		return &Result{Columns: []Column{}, Rows: [][]any{}}, nil // statements without a result
	}
	if err != nil {
		return nil, err
	}
	types, err := readLine()
	if err != nil {
		return nil, fmt.Errorf("reading column types: %w", err)
	}
	res := &Result{Rows: [][]any{}}
	nameFields, typeFields := strings.Split(names, "\t"), strings.Split(types, "\t")
	if len(nameFields) != len(typeFields) {
		return nil, errNotTSV
	}
	for _, t := range typeFields {
		if !typeName.MatchString(t) {
			return nil, errNotTSV // a FORMAT clause in the query chose another format
		}
	}
	for i := range nameFields {
		res.Columns = append(res.Columns, Column{Name: unescapeTSV(nameFields[i]), Type: typeFields[i]})
	}
	size := 0
	for {
		line, err := readLine()
		if err == io.EOF {
			return res, nil
		}
		if errors.Is(err, errByteCap) {
			res.Truncated, res.TruncatedReason = true, fmt.Sprintf("more than max_result_bytes = %d bytes", maxBytes)
			return res, nil
		}
		if err != nil {
			return nil, err
		}
		if res.RowCount >= maxRows {
			res.Truncated, res.TruncatedReason = true, fmt.Sprintf("more than max_result_rows = %d rows", maxRows)
			return res, nil
		}
		if size+len(line) > maxBytes {
			res.Truncated, res.TruncatedReason = true, fmt.Sprintf("more than max_result_bytes = %d bytes", maxBytes)
			return res, nil
		}
		size += len(line) + 1
		fields := strings.Split(line, "\t")
		row := make([]any, len(fields))
		for i, f := range fields {
			typ := ""
			if i < len(res.Columns) {
				typ = res.Columns[i].Type
			}
			row[i] = typedValue(f, typ)
		}
		res.Rows = append(res.Rows, row)
		res.RowCount++
	}
}

// typedValue turns a TSV field into JSON: NULL, small numbers and
// booleans as such, everything else (64-bit integers, which JSON readers
// round, dates, strings) as text.
func typedValue(field, typ string) any {
	if field == `\N` && strings.HasPrefix(typ, "Nullable(") {
		return nil
	}
	base := strings.TrimSuffix(strings.TrimPrefix(typ, "Nullable("), ")")
	switch base {
	case "Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32":
		if n, err := strconv.ParseInt(field, 10, 64); err == nil {
			return n
		}
	case "Float32", "Float64":
		if f, err := strconv.ParseFloat(field, 64); err == nil && !isSpecial(field) {
			return f
		}
	case "Bool":
		return field == "true"
	}
	return unescapeTSV(field)
}

func isSpecial(f string) bool { return f == "nan" || f == "inf" || f == "-inf" }

// unescapeTSV undoes ClickHouse's TabSeparated escaping.
func unescapeTSV(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		c, n := chsql.Unescape(s[i+1:])
		b.WriteByte(c)
		i += n
	}
	return b.String()
}
