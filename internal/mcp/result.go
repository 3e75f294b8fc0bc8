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
	"sync"

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

// tsvReaders are scanTSV's buffers, kept between queries.
var tsvReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// A rowWriter keeps the rows scanTSV reads.
type rowWriter interface {
	// header comes once, before any row, with each column's kind.
	header(cols []Column, kinds []cellKind)
	// row is one line of fields without its newline, valid only during
	// the call.
	row(line []byte)
}

// readTSV reads TabSeparatedWithNamesAndTypes from r into a Result of Go
// values, for the tools that look at the values; see scanTSV.
func readTSV(r io.Reader, maxRows, maxBytes int) (*Result, error) {
	v := &valueRows{maxRows: maxRows}
	res, err := scanTSV(r, maxRows, maxBytes, v)
	if err != nil {
		return nil, err
	}
	res.Rows = v.rows()
	return res, nil
}

// scanTSV reads TabSeparatedWithNamesAndTypes from r, stopping at maxRows
// rows or maxBytes bytes of result, whichever comes first, and hands the
// header and each row to w; it never holds more than one row (or its
// buffer) itself. The Result has the columns and counts, not the rows.
// The caller closes r, which cancels the rest of the query.
//
// Rows are read in place from the reader's buffer: no copy of the line.
func scanTSV(r io.Reader, maxRows, maxBytes int, w rowWriter) (*Result, error) {
	// Nothing beyond the byte cap (plus room for the two header lines) is
	// ever read, so one enormous row cannot grow memory either.
	limited := &io.LimitedReader{R: r, N: int64(maxBytes) + headerAllowance}
	br := tsvReaders.Get().(*bufio.Reader)
	br.Reset(limited)
	defer func() { br.Reset(nil); tsvReaders.Put(br) }()
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
	res := &Result{Columns: []Column{}}
	namesLine, err := readLine()
	if err == io.EOF {
		w.header(res.Columns, nil) // statements without a result
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	names := string(namesLine)
	typesLine, err := readLine()
	if err != nil {
		return nil, fmt.Errorf("reading column types: %w", err)
	}
	nameFields, typeFields := strings.Split(names, "\t"), strings.Split(string(typesLine), "\t")
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
	w.header(res.Columns, kinds)
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
		w.row(line)
		res.RowCount++
	}
}

// cutField returns the first tab-separated field of line and, if more
// follow, the rest.
func cutField(line []byte) (field, rest []byte, more bool) {
	if j := bytes.IndexByte(line, '\t'); j >= 0 {
		return line[:j], line[j+1:], true
	}
	return line, nil, false
}

// kindAt is column i's kind; a row with more fields than the header has
// (which ClickHouse does not send) gets text for the extra ones.
func kindAt(kinds []cellKind, i int) cellKind {
	if i < len(kinds) {
		return kinds[i]
	}
	return kindText
}

// valueRows keeps rows as Go values. Their cells are cut from shared
// blocks, so that a row costs only its values: no []any of its own.
type valueRows struct {
	maxRows int
	kinds   []cellKind
	count   int
	cells   []any // a block that rows' cells are cut from
	// Rows gather in blocks and are put in one slice once, at its size:
	// growing one slice by append would allocate several times its final
	// size on the way.
	blocks [][][]any
	block  [][]any
}

func (v *valueRows) header(_ []Column, kinds []cellKind) { v.kinds = kinds }

func (v *valueRows) row(line []byte) {
	n := bytes.Count(line, []byte{'\t'}) + 1
	if cap(v.cells)-len(v.cells) < n {
		c := 4096
		if v.maxRows < c/n {
			c = v.maxRows * n
		}
		v.cells = make([]any, 0, max(c, n))
	}
	row := v.cells[len(v.cells) : len(v.cells)+n : len(v.cells)+n]
	v.cells = v.cells[:len(v.cells)+n]
	for i := range row {
		var f []byte
		f, line, _ = cutField(line)
		row[i] = kindAt(v.kinds, i).value(f)
	}
	if len(v.block) == cap(v.block) && len(v.block) > 0 {
		v.blocks = append(v.blocks, v.block)
		v.block = nil
	}
	if v.block == nil {
		v.block = make([][]any, 0, min(4096, v.maxRows-v.count))
	}
	v.block = append(v.block, row)
	v.count++
}

func (v *valueRows) rows() [][]any {
	if len(v.blocks) == 0 {
		if v.block == nil {
			return [][]any{}
		}
		return v.block
	}
	rows := make([][]any, 0, v.count)
	for _, b := range append(v.blocks, v.block) {
		rows = append(rows, b...)
	}
	return rows
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
	if bytes.IndexByte(field, '\\') < 0 {
		return string(field)
	}
	return string(appendUnescapedTSV(nil, field))
}

// appendJSON appends a field of a column of kind k as the JSON that
// value's result is written as (appendValue), without making the value.
func (k cellKind) appendJSON(dst, field, scratch []byte) ([]byte, []byte) {
	if k&kindNullable != 0 && string(field) == `\N` {
		return append(dst, "null"...), scratch
	}
	switch k &^ kindNullable {
	case kindInt:
		if n, ok := parseInt10(field); ok {
			return strconv.AppendInt(dst, n, 10), scratch
		}
	case kindFloat:
		if f, err := strconv.ParseFloat(string(field), 64); err == nil && !isSpecial(string(field)) {
			return appendFloat(dst, f), scratch
		}
	case kindBool:
		return strconv.AppendBool(dst, string(field) == "true"), scratch
	}
	if bytes.IndexByte(field, '\\') < 0 {
		return appendJSONString(dst, field), scratch
	}
	scratch = appendUnescapedTSV(scratch[:0], field)
	return appendJSONString(dst, scratch), scratch
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
	return string(appendUnescapedTSV(nil, []byte(s)))
}

// appendUnescapedTSV appends field with ClickHouse's TabSeparated
// escaping undone.
func appendUnescapedTSV(dst, field []byte) []byte {
	for i := 0; i < len(field); i++ {
		if field[i] != '\\' || i+1 == len(field) {
			dst = append(dst, field[i])
			continue
		}
		c, n := chsql.Unescape(field[i+1:])
		dst = append(dst, c)
		i += n
	}
	return dst
}
