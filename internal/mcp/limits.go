package mcp

import (
	"context"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// callLimits is what the limits need to know of one MCP request beyond
// its caller: the client's address, and whether the request has already
// taken its requests_per_minute token (a tool call counts once, however
// many queries it sends).
type callLimits struct {
	addr    string // host:port; "" over stdio
	charged atomic.Bool
}

type callLimitsKey struct{}

// limitCalls gives every request its callLimits.
func limitCalls(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		cl := &callLimits{}
		if extra := req.GetExtra(); extra != nil && extra.TokenInfo != nil {
			cl.addr, _ = extra.TokenInfo.Extra[tokenInfoRemote].(string)
		}
		return next(context.WithValue(ctx, callLimitsKey{}, cl), method, req)
	}
}

// limitsOf returns ctx's callLimits; a fresh one outside a request.
func limitsOf(ctx context.Context) *callLimits {
	if cl, ok := ctx.Value(callLimitsKey{}).(*callLimits); ok {
		return cl
	}
	return &callLimits{}
}
