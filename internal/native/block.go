package native

import (
	"strconv"
	"strings"

	"github.com/ClickHouse/ch-go/proto"
)

// A block is skipped column by column: clickgate reads only as much as
// it needs to find where the block ends (sizes, string lengths, array
// offsets, LowCardinality granules), so that it can relay the block
// unchanged and know where the next packet begins.

// Limits of what one block may declare.
const (
	maxColumns      = 1 << 16
	maxRows         = 1 << 32
	maxNameBytes    = 1 << 16
	maxTypeBytes    = 1 << 16
	maxStringBytes  = 1 << 30
	maxNestedValues = 1 << 40
)

type kind int

const (
	kindFixed kind = iota
	kindString
	kindNullable
	kindArray
	kindTuple
	kindLowCardinality
)

// colType is what skipping a column needs of its type.
type colType struct {
	kind  kind
	size  uint64     // kindFixed: bytes per value
	elems []*colType // nullable, array, low cardinality: one; tuple: each
}

// fixedSizes are the types of a fixed size per value, by name.
var fixedSizes = map[string]uint64{
	"UInt8": 1, "Int8": 1, "Bool": 1, "Nothing": 1,
	"UInt16": 2, "Int16": 2, "Date": 2, "BFloat16": 2,
	"UInt32": 4, "Int32": 4, "Float32": 4, "DateTime": 4, "Date32": 4, "IPv4": 4,
	"UInt64": 8, "Int64": 8, "Float64": 8,
	"UInt128": 16, "Int128": 16, "UUID": 16, "IPv6": 16,
	"UInt256": 32, "Int256": 32,
	"IntervalNanosecond": 8, "IntervalMicrosecond": 8, "IntervalMillisecond": 8, "IntervalSecond": 8,
	"IntervalMinute": 8, "IntervalHour": 8, "IntervalDay": 8, "IntervalWeek": 8, "IntervalMonth": 8,
	"IntervalQuarter": 8, "IntervalYear": 8,
}

// aliases are types that are others under another name.
var aliases = map[string]string{
	"Point":           "Tuple(Float64, Float64)",
	"Ring":            "Array(Tuple(Float64, Float64))",
	"LineString":      "Array(Tuple(Float64, Float64))",
	"Polygon":         "Array(Array(Tuple(Float64, Float64)))",
	"MultiLineString": "Array(Array(Tuple(Float64, Float64)))",
	"MultiPolygon":    "Array(Array(Array(Tuple(Float64, Float64))))",
}

// parseType reads a ClickHouse type name as far as skipping needs.
func parseType(name string, depth int) (*colType, error) {
	if depth > 32 {
		return nil, protocolError("the type %q nests too deeply", clip(name))
	}
	name = strings.TrimSpace(name)
	if s, ok := fixedSizes[name]; ok {
		return &colType{kind: kindFixed, size: s}, nil
	}
	if name == "String" {
		return &colType{kind: kindString}, nil
	}
	if a, ok := aliases[name]; ok {
		return parseType(a, depth+1)
	}
	open := strings.IndexByte(name, '(')
	if open < 0 || !strings.HasSuffix(name, ")") {
		return nil, unsupportedType(name)
	}
	family, inner := name[:open], name[open+1:len(name)-1]
	args, err := splitArgs(inner)
	if err != nil {
		return nil, protocolError("the type %q: %v", clip(name), err)
	}
	one := func() (*colType, error) {
		if len(args) != 1 {
			return nil, unsupportedType(name)
		}
		return parseType(args[0], depth+1)
	}
	switch family {
	case "Nullable", "LowCardinality", "Array":
		e, err := one()
		if err != nil {
			return nil, err
		}
		k := map[string]kind{"Nullable": kindNullable, "LowCardinality": kindLowCardinality, "Array": kindArray}[family]
		return &colType{kind: k, elems: []*colType{e}}, nil
	case "Tuple":
		t := &colType{kind: kindTuple}
		for _, a := range args {
			e, err := parseType(a, depth+1)
			if err != nil && strings.ContainsAny(strings.TrimSpace(a), " ") { // a named element: "name Type"
				_, rest, _ := strings.Cut(strings.TrimSpace(a), " ")
				e, err = parseType(rest, depth+1)
			}
			if err != nil {
				return nil, err
			}
			t.elems = append(t.elems, e)
		}
		if len(t.elems) == 0 {
			return nil, unsupportedType(name)
		}
		return t, nil
	case "Map":
		if len(args) != 2 {
			return nil, unsupportedType(name)
		}
		k, err := parseType(args[0], depth+1)
		if err != nil {
			return nil, err
		}
		v, err := parseType(args[1], depth+1)
		if err != nil {
			return nil, err
		}
		return &colType{kind: kindArray, elems: []*colType{{kind: kindTuple, elems: []*colType{k, v}}}}, nil
	case "SimpleAggregateFunction":
		if len(args) < 2 {
			return nil, unsupportedType(name)
		}
		return parseType(strings.Join(args[1:], ", "), depth+1)
	case "FixedString":
		n, err := strconv.ParseUint(strings.TrimSpace(inner), 10, 32)
		if err != nil || n == 0 {
			return nil, unsupportedType(name)
		}
		return &colType{kind: kindFixed, size: n}, nil
	case "DateTime":
		return &colType{kind: kindFixed, size: 4}, nil
	case "DateTime64":
		return &colType{kind: kindFixed, size: 8}, nil
	case "Enum8":
		return &colType{kind: kindFixed, size: 1}, nil
	case "Enum16":
		return &colType{kind: kindFixed, size: 2}, nil
	case "Decimal32":
		return &colType{kind: kindFixed, size: 4}, nil
	case "Decimal64":
		return &colType{kind: kindFixed, size: 8}, nil
	case "Decimal128":
		return &colType{kind: kindFixed, size: 16}, nil
	case "Decimal256":
		return &colType{kind: kindFixed, size: 32}, nil
	case "Decimal":
		p, err := strconv.Atoi(strings.TrimSpace(args[0]))
		switch {
		case err != nil || p < 1 || p > 76:
			return nil, unsupportedType(name)
		case p <= 9:
			return &colType{kind: kindFixed, size: 4}, nil
		case p <= 18:
			return &colType{kind: kindFixed, size: 8}, nil
		case p <= 38:
			return &colType{kind: kindFixed, size: 16}, nil
		}
		return &colType{kind: kindFixed, size: 32}, nil
	}
	return nil, unsupportedType(name)
}

func unsupportedType(name string) error {
	return protocolError("clickgate cannot relay columns of type %q over the native protocol (it must find where their data ends); use another type or the HTTP interface", clip(name))
}

// splitArgs splits a type's arguments at top-level commas, minding
// parentheses and quoted strings.
func splitArgs(s string) ([]string, error) {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'', '`', '"':
			for i++; i < len(s) && s[i] != c; i++ {
				if s[i] == '\\' {
					i++
				}
			}
			if i >= len(s) {
				return nil, errUnbalanced
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return nil, errUnbalanced
			}
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, errUnbalanced
	}
	return append(out, s[start:]), nil
}

var errUnbalanced = protocolError("unbalanced parentheses or quotes")

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// blockInfo is the block's size.
type blockInfo struct {
	columns, rows uint64
}

// skipBlock consumes one block from s: its info (at revisions that have
// it), columns and rows, and each column's data.
func skipBlock(s source, rev int) (blockInfo, error) {
	var bi blockInfo
	if proto.FeatureBlockInfo.In(rev) {
		for {
			field, err := readUVarInt(s)
			if err != nil {
				return bi, err
			}
			switch field {
			case 0:
			case 1: // is_overflows
				if _, err := s.ReadByte(); err != nil {
					return bi, err
				}
				continue
			case 2: // bucket_num
				if err := s.skip(4); err != nil {
					return bi, err
				}
				continue
			default:
				return bi, protocolError("block info field %d is unknown", field)
			}
			break
		}
	}
	cols, err := readUVarInt(s)
	if err != nil {
		return bi, err
	}
	rows, err := readUVarInt(s)
	if err != nil {
		return bi, err
	}
	if cols > maxColumns || rows > maxRows {
		return bi, protocolError("a block of %d columns and %d rows is more than clickgate relays", cols, rows)
	}
	bi.columns, bi.rows = cols, rows
	for range cols {
		if _, err := readBytes(s, maxNameBytes, "a column name"); err != nil {
			return bi, err
		}
		typ, err := readString(s, maxTypeBytes, "a column type")
		if err != nil {
			return bi, err
		}
		if proto.FeatureCustomSerialization.In(rev) {
			custom, err := s.ReadByte()
			if err != nil {
				return bi, err
			}
			if custom != 0 {
				return bi, protocolError("the column of type %q has a custom (sparse) serialization, which clickgate does not relay", clip(typ))
			}
		}
		if rows == 0 {
			continue // no data at all, not even a prefix
		}
		t, err := parseType(typ, 0)
		if err != nil {
			return bi, err
		}
		if err := t.prefix(s); err != nil {
			return bi, err
		}
		st := &lcState{}
		if err := t.data(s, rows, st); err != nil {
			return bi, err
		}
	}
	return bi, nil
}

// prefix consumes the serialization prefixes: LowCardinality's key
// version, wherever it is nested.
func (t *colType) prefix(s source) error {
	if t.kind == kindLowCardinality {
		v, err := readUInt64(s)
		if err != nil {
			return err
		}
		if v != 1 {
			return protocolError("LowCardinality key version %d is unknown", v)
		}
		return nil
	}
	for _, e := range t.elems {
		if err := e.prefix(s); err != nil {
			return err
		}
	}
	return nil
}

// lcState is a LowCardinality column's state across its granules.
type lcState struct {
	pending    uint64
	indexSize  uint64
	haveGlobal bool
	nested     map[*colType]*lcState
}

func (st *lcState) child(t *colType) *lcState {
	if st.nested == nil {
		st.nested = map[*colType]*lcState{}
	}
	c := st.nested[t]
	if c == nil {
		c = &lcState{}
		st.nested[t] = c
	}
	return c
}

func mul(n, size uint64) (uint64, error) {
	if size != 0 && n > (1<<62)/size {
		return 0, protocolError("a column's size overflows")
	}
	return n * size, nil
}

// data consumes n values of t.
func (t *colType) data(s source, n uint64, st *lcState) error {
	switch t.kind {
	case kindFixed:
		b, err := mul(n, t.size)
		if err != nil {
			return err
		}
		return s.skip(b)
	case kindString:
		return s.skipStrings(n)
	case kindNullable:
		if err := s.skip(n); err != nil {
			return err
		}
		return t.elems[0].data(s, n, st.child(t.elems[0]))
	case kindArray:
		if n == 0 {
			return nil
		}
		b, err := mul(n-1, 8)
		if err != nil {
			return err
		}
		if err := s.skip(b); err != nil {
			return err
		}
		last, err := readUInt64(s)
		if err != nil {
			return err
		}
		if last > maxNestedValues {
			return protocolError("an array column of %d values is more than clickgate relays", last)
		}
		return t.elems[0].data(s, last, st.child(t.elems[0]))
	case kindTuple:
		for _, e := range t.elems {
			if err := e.data(s, n, st.child(e)); err != nil {
				return err
			}
		}
		return nil
	case kindLowCardinality:
		return t.lowCardinality(s, n, st)
	}
	return protocolError("unknown column kind")
}

// LowCardinality index flags (ClickHouse's IndexesSerializationType).
const (
	lcIndexTypeMask      = 0xff
	lcNeedGlobal         = 1 << 8
	lcHasAdditionalKeys  = 1 << 9
	lcNeedUpdate         = 1 << 10
	lcKnownFlags         = lcIndexTypeMask | lcNeedGlobal | lcHasAdditionalKeys | lcNeedUpdate
	maxDictionaryEntries = 1 << 32
)

// lowCardinality consumes n rows in granules, as ClickHouse reads them.
func (t *colType) lowCardinality(s source, n uint64, st *lcState) error {
	dict := dictionaryType(t.elems[0])
	for n > 0 {
		if st.pending == 0 {
			flags, err := readUInt64(s)
			if err != nil {
				return err
			}
			if flags&^lcKnownFlags != 0 || flags&lcIndexTypeMask > 3 {
				return protocolError("LowCardinality index flags 0x%x are unknown", flags)
			}
			st.indexSize = 1 << (flags & lcIndexTypeMask)
			if flags&lcNeedGlobal != 0 && (!st.haveGlobal || flags&lcNeedUpdate != 0) {
				if err := skipKeys(s, dict); err != nil {
					return err
				}
				st.haveGlobal = true
			}
			if flags&lcHasAdditionalKeys != 0 {
				if err := skipKeys(s, dict); err != nil {
					return err
				}
			}
			if st.pending, err = readUInt64(s); err != nil {
				return err
			}
			if st.pending == 0 {
				return protocolError("a LowCardinality granule of no rows")
			}
		}
		k := min(n, st.pending)
		b, err := mul(k, st.indexSize)
		if err != nil {
			return err
		}
		if err := s.skip(b); err != nil {
			return err
		}
		n -= k
		st.pending -= k
	}
	return nil
}

func skipKeys(s source, dict *colType) error {
	keys, err := readUInt64(s)
	if err != nil {
		return err
	}
	if keys > maxDictionaryEntries {
		return protocolError("a LowCardinality dictionary of %d keys is more than clickgate relays", keys)
	}
	return dict.data(s, keys, &lcState{})
}

// dictionaryType is the type of a LowCardinality dictionary's keys: the
// inner type without Nullable.
func dictionaryType(t *colType) *colType {
	if t.kind == kindNullable {
		return t.elems[0]
	}
	return t
}

// appendEmptyBlock appends a block of no columns and no rows, as
// ClickHouse writes it at revision rev.
func appendEmptyBlock(b []byte, rev int) []byte {
	if proto.FeatureBlockInfo.In(rev) {
		b = append(b, 1, 0, 2, 0xff, 0xff, 0xff, 0xff, 0) // is_overflows false, bucket_num -1, end
	}
	return append(b, 0, 0)
}
