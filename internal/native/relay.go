package native

import (
	"encoding/binary"

	"github.com/ClickHouse/ch-go/proto"
)

// maxServerText bounds a string in a server packet (an exception's
// stack trace, a table's column description).
const maxServerText = 64 << 20

// relayUpstream relays ClickHouse's packets to the client until either
// closes. Blocks come compressed (clickgate always asks for it); they are
// relayed as they came to a client that asked for compression, else
// decompressed.
func (c *conn) relayUpstream() error {
	raw := &rawSource{r: c.ur}
	frames := &frameSource{raw: c.ur, trusted: true}
	for {
		code, err := readUVarInt(raw)
		if err != nil {
			return err
		}
		c.cwMu.Lock()
		err = c.relayPacket(code, raw, frames)
		raw.tee, frames.tee, frames.rawTee = nil, nil, nil
		// The query ends before the client learns it: its next query may
		// come at once.
		ended, drain := false, false
		if err == nil {
			switch proto.ServerCode(code) {
			case proto.ServerCodeEndOfStream:
				ended, drain = c.endQuery(nil, "ok")
			case proto.ServerCodeException:
				ended, drain = c.endQuery(&c.lastException, "failed")
			}
		}
		if err == nil && (ended || c.ur.Buffered() == 0) {
			err = c.cw.Flush()
		}
		c.cwMu.Unlock()
		if err != nil {
			return err
		}
		if drain {
			c.close() // shutting down: the query's end went out
			return nil
		}
	}
}

// relayPacket relays one packet whose code was read; c.cwMu is held.
func (c *conn) relayPacket(code uint64, raw *rawSource, frames *frameSource) error {
	c.cw.Write(appendUVarInt(nil, code))
	raw.tee = c.cw
	switch proto.ServerCode(code) {
	case proto.ServerCodeData, proto.ServerCodeTotals, proto.ServerCodeExtremes:
		if proto.FeatureTempTables.In(c.rev) {
			if _, err := readBytes(raw, maxNameBytes, "the table name"); err != nil {
				return err
			}
		}
		var bi blockInfo
		var err error
		if !c.upstreamCompression.Load() { // and not the client's: as it comes
			bi, err = skipBlock(raw, c.rev)
		} else {
			raw.tee = nil
			if c.clientCompression.Load() {
				frames.rawTee = c.cw
			} else {
				frames.tee = c.cw
			}
			if bi, err = skipBlock(frames, c.rev); err == nil && !frames.atBoundary() {
				err = protocolError("ClickHouse's block does not end where its frame does")
			}
		}
		if err != nil {
			return err
		}
		if proto.ServerCode(code) == proto.ServerCodeData {
			c.resultRows(bi.rows)
		}
		return nil
	case proto.ServerCodeLog, serverCodeProfileEvents:
		if _, err := readBytes(raw, maxNameBytes, "the table name"); err != nil {
			return err
		}
		_, err := skipBlock(raw, c.rev)
		return err
	case proto.ServerCodeException:
		return c.readException(raw)
	case proto.ServerCodeProgress:
		return c.progress(raw)
	case proto.ServerCodePong, proto.ServerCodeEndOfStream, proto.ServerReadTaskRequest:
		return nil
	case proto.ServerCodeProfile:
		rows, err := readUVarInt(raw)
		if err != nil {
			return err
		}
		for _, f := range []string{"v", "v", "b", "v", "b"} { // blocks, bytes, applied limit, rows before limit, calculated
			if f == "v" {
				_, err = readUVarInt(raw)
			} else {
				_, err = raw.ReadByte()
			}
			if err != nil {
				return err
			}
		}
		_ = rows
		return nil
	case proto.ServerCodeTablesStatus:
		n, err := readUVarInt(raw)
		if err != nil {
			return err
		}
		if n > maxTables {
			return protocolError("a status of %d tables", n)
		}
		for range n {
			for range 2 {
				if _, err := readBytes(raw, maxHelloText, "a table name"); err != nil {
					return err
				}
			}
			replicated, err := raw.ReadByte()
			if err != nil {
				return err
			}
			if replicated != 0 {
				if _, err := readUVarInt(raw); err != nil {
					return err
				}
			}
		}
		return nil
	case proto.ServerCodeTableColumns:
		for range 2 {
			if _, err := readBytes(raw, maxServerText, "a column description"); err != nil {
				return err
			}
		}
		return nil
	case proto.ServerPartUUIDs:
		n, err := readUVarInt(raw)
		if err != nil {
			return err
		}
		b, err := mul(n, 16)
		if err != nil {
			return err
		}
		return raw.skip(b)
	}
	return protocolError("ClickHouse sent packet %d, which clickgate does not relay", code)
}

// serverCodeProfileEvents is ServerProfileEvents.
const serverCodeProfileEvents = proto.ServerProfileEvents

// readException relays an exception (and the nested ones), keeping the
// first one's code for the audit.
func (c *conn) readException(s source) error {
	var b [4]byte
	if err := s.full(b[:]); err != nil {
		return err
	}
	c.lastException = proto.Exception{Code: proto.Error(int32(binary.LittleEndian.Uint32(b[:])))}
	return skipExceptionRest(s)
}

// skipException consumes an exception after its code.
func skipException(s source) error {
	if err := s.skip(4); err != nil {
		return err
	}
	return skipExceptionRest(s)
}

func skipExceptionRest(s source) error {
	for depth := 0; ; depth++ {
		for range 3 { // name, message, stack trace
			if _, err := readBytes(s, maxServerText, "an exception"); err != nil {
				return err
			}
		}
		nested, err := s.ReadByte()
		if err != nil {
			return err
		}
		if nested == 0 {
			return nil
		}
		if depth > 64 {
			return protocolError("exceptions nest too deeply")
		}
		if err := s.skip(4); err != nil {
			return err
		}
	}
}

func (c *conn) progress(s source) error {
	var vals []*uint64
	var rows, bytes, total, wrows, wbytes, elapsed uint64
	vals = append(vals, &rows, &bytes)
	if c.rev >= revTotalRows {
		vals = append(vals, &total)
	}
	if proto.FeatureClientWriteInfo.In(c.rev) {
		vals = append(vals, &wrows, &wbytes)
	}
	if proto.FeatureServerQueryTimeInProgress.In(c.rev) {
		vals = append(vals, &elapsed)
	}
	for _, v := range vals {
		var err error
		if *v, err = readUVarInt(s); err != nil {
			return err
		}
	}
	c.mu.Lock()
	if q := c.q; q != nil {
		q.ev.progress(rows, bytes, wrows)
	}
	c.mu.Unlock()
	return nil
}

func (c *conn) resultRows(n uint64) {
	c.mu.Lock()
	if q := c.q; q != nil {
		q.ev.result(n)
	}
	c.mu.Unlock()
}
