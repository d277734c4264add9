package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// client makes gRPC calls of one method by writing HTTP/2 frames itself, on
// one connection and from one goroutine that reads answers and writes the
// next requests. grpc-go's client spends more CPU per call than the servers
// it is meant to load, so a benchmark driven by it measures the client; this
// one spends a few microseconds a call. It does what unary calls to a
// grpc-go server need: flow control both ways, SETTINGS and PING
// acknowledgements, header blocks continued in CONTINUATION frames, and
// trailers-only answers; anything else the server sends ends the run with
// an error.
type client struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	fr   *http2.Framer
	dec  *hpack.Decoder

	header      []byte // the encoded header block of every request
	nextID      uint32
	sendWindow  int64 // the connection's send window
	streamLimit int64 // the server's initial stream window
	maxFrame    int   // the server's largest DATA payload
	maxStreams  uint32
	received    int64 // bytes received since this side last opened its window

	calls   map[uint32]*call
	waiting []*call // calls that do not fit in the send window yet

	block blockState // the header block being read
}

// call is one request in flight.
type call struct {
	req   []byte // the gRPC-framed request
	start time.Time
	resp  []byte // the gRPC-framed answer, as received so far
}

// blockState is what the header block being read has said so far.
type blockState struct {
	stream                          uint32
	endStream                       bool
	status, grpcStatus, grpcMessage string
}

// receiveWindow is the window this side grants, per stream and for the
// connection; it is reopened when half of it has been used.
const receiveWindow = 1 << 30

// dial connects to a gRPC server at addr without TLS and exchanges the
// HTTP/2 preface and settings; calls will be to method.
func dial(ctx context.Context, addr, method string) (*client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &client{
		conn:        conn,
		br:          bufio.NewReaderSize(conn, 64<<10),
		bw:          bufio.NewWriterSize(conn, 64<<10),
		sendWindow:  65535,
		streamLimit: 65535,
		maxFrame:    16384,
		maxStreams:  ^uint32(0),
		nextID:      1,
		calls:       make(map[uint32]*call),
	}
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.SetReuseFrames()
	c.dec = hpack.NewDecoder(4096, c.headerField)
	c.header = requestHeader(addr, method)

	deadline, _ := ctx.Deadline()
	if deadline.IsZero() {
		deadline = time.Now().Add(10 * time.Second)
	}
	err = conn.SetDeadline(deadline)
	if err == nil {
		err = c.handshake()
	}
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("HTTP/2 handshake with %s: %w", addr, err)
	}
	return c, nil
}

// requestHeader encodes the headers of a gRPC request. The encoder's
// dynamic table is kept empty, so the block can be sent again and again.
func requestHeader(authority, method string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	enc.SetMaxDynamicTableSizeLimit(0)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: method},
		{Name: ":authority", Value: authority},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
		{Name: "user-agent", Value: "keygate-bench-load"},
	}
	for range 2 { // the first block carries the table size update: keep the second
		buf.Reset()
		for _, f := range fields {
			_ = enc.WriteField(f) // writes to a bytes.Buffer, which never fails
		}
	}
	return bytes.Clone(buf.Bytes())
}

// handshake sends the preface and this side's settings and reads frames
// until the server's settings have arrived.
func (c *client) handshake() error {
	if _, err := io.WriteString(c.bw, http2.ClientPreface); err != nil {
		return err
	}
	if err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: receiveWindow},
	); err != nil {
		return err
	}
	if err := c.fr.WriteWindowUpdate(0, receiveWindow-65535); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return err
		}
		s, ok := f.(*http2.SettingsFrame)
		if !ok || s.IsAck() {
			if _, err := c.handle(f); err != nil {
				return err
			}
			continue
		}
		if err := c.settings(s); err != nil {
			return err
		}
		return c.bw.Flush()
	}
}

// settings applies the server's settings and acknowledges them.
func (c *client) settings(f *http2.SettingsFrame) error {
	err := f.ForeachSetting(func(s http2.Setting) error {
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.streamLimit = int64(s.Val)
		case http2.SettingMaxFrameSize:
			c.maxFrame = int(s.Val)
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = s.Val
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.fr.WriteSettingsAck()
}

// send starts c's call, or queues it until the send window has room.
func (c *client) send(cl *call) error {
	n := int64(len(cl.req))
	if n > c.streamLimit {
		return fmt.Errorf("a request of %d bytes is larger than the server's stream window of %d", n, c.streamLimit)
	}
	if n > c.sendWindow {
		c.waiting = append(c.waiting, cl)
		return nil
	}
	if uint32(len(c.calls)) >= c.maxStreams {
		return fmt.Errorf("the server allows only %d streams at once", c.maxStreams)
	}
	id := c.nextID
	c.nextID += 2
	c.sendWindow -= n
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.header, EndHeaders: true}); err != nil {
		return err
	}
	for b := cl.req; ; {
		k := min(len(b), c.maxFrame)
		last := k == len(b)
		if err := c.fr.WriteData(id, last, b[:k]); err != nil {
			return err
		}
		if b = b[k:]; last {
			break
		}
	}
	cl.start = time.Now()
	cl.resp = cl.resp[:0]
	c.calls[id] = cl
	return nil
}

// sendWaiting sends the queued calls that fit in the send window.
func (c *client) sendWaiting() error {
	for len(c.waiting) > 0 && int64(len(c.waiting[0].req)) <= c.sendWindow {
		cl := c.waiting[0]
		c.waiting = c.waiting[1:]
		if err := c.send(cl); err != nil {
			return err
		}
	}
	return nil
}

// next reads frames until a call finishes and returns it, with its answer
// in resp (gRPC framing removed). Answers written by then are flushed
// before it waits for the network.
func (c *client) next() (*call, error) {
	for {
		if c.br.Buffered() == 0 {
			if err := c.bw.Flush(); err != nil {
				return nil, err
			}
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if cl, err := c.handle(f); cl != nil || err != nil {
			return cl, err
		}
	}
}

// handle acts on one frame and returns the call it finished, if any.
func (c *client) handle(f http2.Frame) (*call, error) {
	switch f := f.(type) {
	case *http2.DataFrame:
		cl := c.calls[f.StreamID]
		if cl == nil {
			return nil, fmt.Errorf("DATA on stream %d, which has no call", f.StreamID)
		}
		if f.StreamEnded() {
			return nil, fmt.Errorf("stream %d ended without trailers", f.StreamID)
		}
		cl.resp = append(cl.resp, f.Data()...)
		c.received += int64(f.Length)
		if c.received >= receiveWindow/2 {
			if err := c.fr.WriteWindowUpdate(0, uint32(c.received)); err != nil {
				return nil, err
			}
			c.received = 0
		}
	case *http2.HeadersFrame:
		c.block = blockState{stream: f.StreamID, endStream: f.StreamEnded()}
		return c.headerBlock(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.ContinuationFrame:
		return c.headerBlock(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.SettingsFrame:
		if !f.IsAck() {
			return nil, c.settings(f)
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			return nil, c.fr.WritePing(true, f.Data)
		}
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			c.sendWindow += int64(f.Increment)
			return nil, c.sendWaiting()
		}
	case *http2.RSTStreamFrame:
		return nil, fmt.Errorf("server reset stream %d: %v", f.StreamID, f.ErrCode)
	case *http2.GoAwayFrame:
		return nil, fmt.Errorf("server sent GOAWAY (%v): %q", f.ErrCode, f.DebugData())
	}
	return nil, nil
}

// headerBlock decodes a part of a header block; at its end, if the block
// ended its stream, it finishes the stream's call.
func (c *client) headerBlock(frag []byte, end bool) (*call, error) {
	if _, err := c.dec.Write(frag); err != nil {
		return nil, err
	}
	if !end {
		return nil, nil
	}
	if err := c.dec.Close(); err != nil {
		return nil, err
	}
	b := c.block
	if !b.endStream {
		return nil, nil // the answer's headers: its trailers follow
	}
	cl := c.calls[b.stream]
	if cl == nil {
		return nil, fmt.Errorf("trailers on stream %d, which has no call", b.stream)
	}
	delete(c.calls, b.stream)
	switch {
	case b.grpcStatus == "":
		return nil, fmt.Errorf("stream %d ended without grpc-status (:status %s)", b.stream, b.status)
	case b.grpcStatus != "0":
		return nil, fmt.Errorf("call failed: grpc-status %s: %s", b.grpcStatus, b.grpcMessage)
	}
	msg, err := unframe(cl.resp)
	if err != nil {
		return nil, fmt.Errorf("stream %d: %w", b.stream, err)
	}
	cl.resp = msg
	return cl, nil
}

// headerField is the decoder's emit function: it keeps what headerBlock
// reads.
func (c *client) headerField(f hpack.HeaderField) {
	switch f.Name {
	case ":status":
		c.block.status = f.Value
	case "grpc-status":
		c.block.grpcStatus = f.Value
	case "grpc-message":
		c.block.grpcMessage = f.Value
	}
}

// frame returns msg with gRPC's length prefix, uncompressed.
func frame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// unframe returns the one message of a gRPC-framed answer.
func unframe(b []byte) ([]byte, error) {
	if len(b) < 5 {
		return nil, errors.New("answer shorter than gRPC's message prefix")
	}
	if b[0] != 0 {
		return nil, errors.New("compressed answer")
	}
	if n := binary.BigEndian.Uint32(b[1:5]); int(n) != len(b)-5 {
		return nil, fmt.Errorf("answer of %d bytes announced as %d", len(b)-5, n)
	}
	return b[5:], nil
}
