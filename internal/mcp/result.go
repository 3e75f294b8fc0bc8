package mcp

import (
	"bufio"
	"bytes"
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
//
// Rows are read in place from the reader's buffer, split without a slice
// of fields, and their cells are cut from shared blocks, so that a row
// costs only its values: no copy of the line, no []string, no []any of
// its own.
func readTSV(r io.Reader, maxRows, maxBytes int) (*Result, error) {
	// Nothing beyond the byte cap (plus room for the two header lines) is
	// ever read, so one enormous row cannot grow memory either.
	limited := &io.LimitedReader{R: r, N: int64(maxBytes) + headerAllowance}
	br := bufio.NewReaderSize(limited, 16<<10)
	var long []byte // a line longer than br's buffer, gathered here
	// readLine returns the next line without its newline; the bytes are
	// valid until the next call.
	readLine := func() ([]byte, error) {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err == io.EOF && len(line) != 0 {
			if limited.N == 0 {
				return nil, errByteCap // a row cut by the cap is dropped
			}
			err = nil
		}
		if err != nil {
			return nil, err
		}
		return bytes.TrimSuffix(line, []byte{'\n'}), nil
	}
	namesLine, err := readLine()
	if err == io.EOF {
		return &Result{Columns: []Column{}, Rows: [][]any{}}, nil // statements without a result
	}
	if err != nil {
		return nil, err
	}
	names := string(namesLine)
	typesLine, err := readLine()
	if err != nil {
		return nil, fmt.Errorf("reading column types: %w", err)
	}
	types := string(typesLine)
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
	kinds := make([]cellKind, len(nameFields))
	for i := range nameFields {
		res.Columns = append(res.Columns, Column{Name: unescapeTSV(nameFields[i]), Type: typeFields[i]})
		kinds[i] = kindOf(typeFields[i])
	}
	var (
		cells []any // a block that rows' cells are cut from
		// Rows gather in blocks and are put in res.Rows once, at its
		// size: growing one slice by append would allocate several
		// times its final size on the way.
		blocks [][][]any
		block  [][]any
	)
	done := func() *Result {
		if len(blocks) == 0 {
			res.Rows = append(res.Rows, block...)
		} else {
			res.Rows = make([][]any, 0, res.RowCount)
			for _, b := range append(blocks, block) {
				res.Rows = append(res.Rows, b...)
			}
		}
		return res
	}
	size := 0
	for {
		line, err := readLine()
		if err == io.EOF {
			return done(), nil
		}
		if errors.Is(err, errByteCap) {
			res.Truncated, res.TruncatedReason = true, fmt.Sprintf("more than max_result_bytes = %d bytes", maxBytes)
			return done(), nil
		}
		if err != nil {
			return nil, err
		}
		if res.RowCount >= maxRows {
			res.Truncated, res.TruncatedReason = true, fmt.Sprintf("more than max_result_rows = %d rows", maxRows)
			return done(), nil
		}
		if size+len(line) > maxBytes {
			res.Truncated, res.TruncatedReason = true, fmt.Sprintf("more than max_result_bytes = %d bytes", maxBytes)
			return done(), nil
		}
		size += len(line) + 1
		n := bytes.Count(line, []byte{'\t'}) + 1
		if cap(cells)-len(cells) < n {
			c := 4096
			if maxRows < c/n {
				c = maxRows * n
			}
			cells = make([]any, 0, max(c, n))
		}
		row := cells[len(cells) : len(cells)+n : len(cells)+n]
		cells = cells[:len(cells)+n]
		for i := 0; i < n; i++ {
			f := line
			if j := bytes.IndexByte(line, '\t'); j >= 0 {
				f, line = line[:j], line[j+1:]
			}
			k := kindText
			if i < len(kinds) {
				k = kinds[i]
			}
			row[i] = k.value(f)
		}
		if len(block) == cap(block) && len(block) > 0 {
			blocks = append(blocks, block)
			block = nil
		}
		if block == nil {
			block = make([][]any, 0, min(4096, maxRows-res.RowCount))
		}
		block = append(block, row)
		res.RowCount++
	}
}

// cellKind is how a column's fields become JSON values: NULL, small
// numbers and booleans as such, everything else (64-bit integers, which
// JSON readers round, dates, strings) as text.
type cellKind uint8

const (
	kindText cellKind = iota
	kindInt
	kindFloat
	kindBool
	kindNullable cellKind = 8 // or'ed with one of the above
)

// kindOf reads a column type, once per column.
func kindOf(typ string) cellKind {
	k := kindText
	if strings.HasPrefix(typ, "Nullable(") {
		k = kindNullable
	}
	switch strings.TrimSuffix(strings.TrimPrefix(typ, "Nullable("), ")") {
	case "Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32":
		k |= kindInt
	case "Float32", "Float64":
		k |= kindFloat
	case "Bool":
		k |= kindBool
	}
	return k
}

// value is a field of a column of kind k as a JSON value, without a
// copy of the field unless a string is kept.
func (k cellKind) value(field []byte) any {
	if k&kindNullable != 0 && string(field) == `\N` {
		return nil
	}
	switch k &^ kindNullable {
	case kindInt:
		if n, ok := parseInt10(field); ok {
			return n
		}
	case kindFloat:
		if f, err := strconv.ParseFloat(string(field), 64); err == nil && !isSpecial(string(field)) {
			return f
		}
	case kindBool:
		return string(field) == "true"
	}
	return unescapeTSV(string(field))
}

// parseInt10 is strconv.ParseInt(string(b), 10, 64) without the copy.
func parseInt10(b []byte) (int64, bool) {
	digits := b
	if len(digits) > 0 && (digits[0] == '+' || digits[0] == '-') {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 { // 18 digits always fit in an int64
		n, err := strconv.ParseInt(string(b), 10, 64)
		return n, err == nil
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if b[0] == '-' {
		n = -n
	}
	return n, true
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
