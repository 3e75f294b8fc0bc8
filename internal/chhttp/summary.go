package chhttp

import (
	"encoding/json"
	"strconv"
)

// SummaryHeader is the response header in which ClickHouse reports what a
// query read and wrote, once the query has ended (or, with
// send_progress_in_http_headers, as of the last progress header).
const SummaryHeader = "X-ClickHouse-Summary"

// Summary is ClickHouse's X-ClickHouse-Summary response header: what a
// query read, wrote and returned. A count the server did not send is 0.
type Summary struct {
	ReadRows, ReadBytes, WrittenRows, WrittenBytes, TotalRowsToRead, ResultRows, ResultBytes uint64
}

// ParseSummary reads the X-ClickHouse-Summary header, a JSON object whose
// values are numbers in strings: {"read_rows":"1","read_bytes":"1",…}.
// Servers of different versions send different keys (ClickHouse 18.16
// sends no such header at all; 26.7 sends all seven and elapsed_ns and
// memory_usage): a missing key is 0, and other keys are ignored. A bare
// JSON number is read as well. ok is false for an empty or malformed
// header, or a known key whose value is not an unsigned 64-bit count.
func ParseSummary(header string) (s Summary, ok bool) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(header), &fields); err != nil || fields == nil {
		return Summary{}, false
	}
	for key, dst := range map[string]*uint64{
		"read_rows":          &s.ReadRows,
		"read_bytes":         &s.ReadBytes,
		"written_rows":       &s.WrittenRows,
		"written_bytes":      &s.WrittenBytes,
		"total_rows_to_read": &s.TotalRowsToRead,
		"result_rows":        &s.ResultRows,
		"result_bytes":       &s.ResultBytes,
	} {
		raw, found := fields[key]
		if !found {
			continue
		}
		n, valid := count(raw)
		if !valid {
			return Summary{}, false
		}
		*dst = n
	}
	return s, true
}

// count reads a count as ClickHouse sends it, "123", or as a bare JSON
// number 123.
func count(raw json.RawMessage) (uint64, bool) {
	text := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, false
		}
	}
	if text == "" || text[0] < '0' || text[0] > '9' {
		return 0, false // no sign, no space, no null
	}
	n, err := strconv.ParseUint(text, 10, 64)
	return n, err == nil
}
