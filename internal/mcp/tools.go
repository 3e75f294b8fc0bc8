package mcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/clickhouse"
)

// The tool names and arguments are part of clickgate's public contract.
const (
	toolListDatabases = "list_databases"
	toolListTables    = "list_tables"
	toolDescribeTable = "describe_table"
	toolRunQuery      = "run_query"
	toolExplainQuery  = "explain_query"
	toolWriteQuery    = "write_query"
)

// writeTools need the write scope when mcp.scopes.write is set.
var writeTools = map[string]bool{toolWriteQuery: true}

type noArgs struct{}

type listTablesArgs struct {
	Database string `json:"database" jsonschema:"the database to list"`
	Like     string `json:"like,omitempty" jsonschema:"optional LIKE pattern for table names, e.g. %events%"`
	Cursor   string `json:"cursor,omitempty" jsonschema:"the next_cursor of the previous page"`
}

type tableArgs struct {
	Database string `json:"database" jsonschema:"the table's database"`
	Table    string `json:"table" jsonschema:"the table"`
}

type queryArgs struct {
	Query string `json:"query" jsonschema:"one ClickHouse SQL statement"`
}

type explainArgs struct {
	Query string `json:"query" jsonschema:"the SELECT to explain"`
	Kind  string `json:"kind,omitempty" jsonschema:"plan (default), pipeline, syntax or estimate"`
}

// TablePage is one page of list_tables.
type TablePage struct {
	Result
	NextCursor string `json:"next_cursor,omitempty"`
}

// tablePageSize is how many tables list_tables returns at once.
const tablePageSize = 100

func ptr[T any](v T) *T { return &v }

func readOnlyTool[Out any](name, title, desc string) *mcp.Tool {
	return &mcp.Tool{Name: name, Title: title, Description: desc, OutputSchema: outputSchema[Out](), Annotations: &mcp.ToolAnnotations{
		Title: title, ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: ptr(false),
	}}
}

// outputSchema is Out's inferred schema, made precise where inference is
// loose: lists are never null, and a row's cells are strings, numbers,
// booleans or null. Strict clients reject "items": true.
func outputSchema[Out any]() *jsonschema.Schema {
	s, err := jsonschema.For[Out](nil)
	if err != nil {
		panic(fmt.Sprintf("output schema of %T: %v", *new(Out), err))
	}
	tighten(s)
	return s
}

func tighten(s *jsonschema.Schema) {
	for name, p := range s.Properties {
		if slices.Contains(p.Types, "array") {
			p.Types, p.Type = nil, "array"
		}
		if name == "rows" && p.Type == "array" {
			p.Items = &jsonschema.Schema{Type: "array", Items: &jsonschema.Schema{Types: []string{"string", "number", "boolean", "null"}}}
		}
		tighten(p)
	}
}

func (s *Server) addTools() {
	addTool(s, readOnlyTool[Result](toolListDatabases, "List databases",
		"Lists the databases you can see."), s.listDatabases)
	addTool(s, readOnlyTool[TablePage](toolListTables, "List tables",
		"Lists a database's tables with engine, rows, bytes and comment where the server knows them, 100 at a time."), s.listTables)
	addTool(s, readOnlyTool[TableDescription](toolDescribeTable, "Describe a table",
		"Shows a table's columns (types, defaults, comments, key membership) and its engine and keys."), s.describeTable)
	addTool(s, readOnlyTool[SampleRows](toolSampleRows, "Sample rows of a table",
		fmt.Sprintf("Shows a few rows of a table (n: %d by default, at most %d), cheaply: from a sample when the table has a sampling key (SAMPLE BY), else the first rows read.", sampleRowsDefault, sampleRowsMax)), s.sampleRows)
	addTool(s, readOnlyTool[Result](toolSearchSchema, "Search tables and columns",
		fmt.Sprintf("Finds the tables and columns whose name or comment contains any of the words (case-insensitive, literal): database, table, column (empty for a table), type (the engine for a table) and which field matched. At most limit matches (%d by default).", searchLimitDefault)), s.searchSchema)
	addEncodedTool(s, readOnlyTool[Result](toolRunQuery, "Run a read-only query",
		fmt.Sprintf("Runs one read-only SQL query. ClickHouse refuses writes (readonly). At most %d rows or %d bytes come back; the answer says when it was cut. Add LIMIT and aggregate in SQL.", s.opt.MaxResultRows, s.opt.MaxResultBytes)), s.runQuery)
	addEncodedTool(s, readOnlyTool[Result](toolExplainQuery, "Explain a query",
		"Shows how ClickHouse would run a query: EXPLAIN PLAN (default), PIPELINE, SYNTAX or ESTIMATE."), s.explainQuery)
	if !s.opt.ReadOnly {
		addEncodedTool(s, &mcp.Tool{Name: toolWriteQuery, Title: "Run a writing query", OutputSchema: outputSchema[Result](),
			Description: "Runs one SQL statement that may change data or schema (INSERT, CREATE, ALTER, DROP…), as you, with your grants.",
			Annotations: &mcp.ToolAnnotations{Title: "Run a writing query", DestructiveHint: ptr(true), OpenWorldHint: ptr(false)},
		}, s.writeQuery)
	}
}

func (s *Server) listDatabases(ctx context.Context, req *mcp.CallToolRequest, _ noArgs) (*mcp.CallToolResult, *Result, error) {
	ctx, done, c, err := begin(ctx, req.Extra)
	defer done()
	if err != nil {
		return nil, nil, err
	}
	res, err := s.run(ctx, c, queryRun{sql: "SELECT name FROM system.databases" + s.accessFor(c).where("name", true) + " ORDER BY name"})
	if err != nil {
		return nil, nil, err
	}
	return textResult(renderText(res)), res, nil
}

func (s *Server) listTables(ctx context.Context, req *mcp.CallToolRequest, a listTablesArgs) (*mcp.CallToolResult, *TablePage, error) {
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
	after := ""
	if a.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(a.Cursor)
		if err != nil {
			return nil, nil, fmt.Errorf("cursor is not one that list_tables returned")
		}
		after = string(b)
	}
	sql, err := info.listTablesSQL(a.Database, a.Like, after, tablePageSize+1)
	if err != nil {
		return nil, nil, err
	}
	res, err := s.run(ctx, c, queryRun{sql: sql, maxRows: tablePageSize + 1})
	if err != nil {
		return nil, nil, err
	}
	page := &TablePage{Result: *res}
	if len(res.Rows) > tablePageSize {
		page.Rows = res.Rows[:tablePageSize]
		page.RowCount = tablePageSize
		page.Truncated, page.TruncatedReason = false, ""
		last, _ := page.Rows[tablePageSize-1][0].(string)
		page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(last))
	}
	text := renderText(&page.Result)
	if page.NextCursor != "" {
		text += "\nMore tables: call list_tables again with cursor " + page.NextCursor
	}
	return textResult(text), page, nil
}

// errNoTable means describe found no such table.
var errNoTable = errors.New("there is no table")

// TableDescription is describe_table's answer.
type TableDescription struct {
	Table   Result `json:"table"`
	Columns Result `json:"columns"`
}

func (s *Server) describeTable(ctx context.Context, req *mcp.CallToolRequest, a tableArgs) (*mcp.CallToolResult, *TableDescription, error) {
	ctx, done, c, err := begin(ctx, req.Extra)
	defer done()
	if err != nil {
		return nil, nil, err
	}
	if err := s.checkDatabase(ctx, c, a.Database); err != nil {
		return nil, nil, err
	}
	d, err := s.describe(ctx, c, a.Database, a.Table)
	if err != nil {
		return nil, nil, err
	}
	return textResult("Table:\n" + renderText(&d.Table) + "\nColumns:\n" + renderText(&d.Columns)), d, nil
}

func (s *Server) describe(ctx context.Context, c *clickhouse.Caller, database, table string) (*TableDescription, error) {
	info, err := s.schemaInfo(ctx, c)
	if err != nil {
		return nil, err
	}
	tableSQL, columnsSQL, err := info.describeSQL(database, table)
	if err != nil {
		return nil, err
	}
	t, err := s.run(ctx, c, queryRun{sql: tableSQL})
	if err != nil {
		return nil, err
	}
	if t.RowCount == 0 {
		return nil, fmt.Errorf("%w %s.%s that you can see", errNoTable, database, table)
	}
	cols, err := s.run(ctx, c, queryRun{sql: columnsSQL})
	if err != nil {
		return nil, err
	}
	return &TableDescription{Table: *t, Columns: *cols}, nil
}

func (s *Server) runQuery(ctx context.Context, req *mcp.CallToolRequest, a queryArgs) (*mcp.CallToolResult, error) {
	return s.query(ctx, req, queryRun{sql: a.Query})
}

func (s *Server) writeQuery(ctx context.Context, req *mcp.CallToolRequest, a queryArgs) (*mcp.CallToolResult, error) {
	return s.query(ctx, req, queryRun{sql: a.Query, write: true})
}

func (s *Server) explainQuery(ctx context.Context, req *mcp.CallToolRequest, a explainArgs) (*mcp.CallToolResult, error) {
	kind := strings.ToUpper(strings.TrimSpace(a.Kind))
	if kind == "" {
		kind = "PLAN"
	}
	switch kind {
	case "PLAN", "PIPELINE", "SYNTAX", "ESTIMATE":
	default:
		return nil, fmt.Errorf("kind %q is not one of plan, pipeline, syntax, estimate", a.Kind)
	}
	ctx, done, c, err := begin(ctx, req.Extra)
	defer done()
	if err != nil {
		return nil, err
	}
	info, err := s.schemaInfo(ctx, c)
	if err != nil {
		return nil, err
	}
	if need, ok := explainSince[kind]; ok && !info.version.AtLeast(need[0], need[1]) {
		return nil, fmt.Errorf("EXPLAIN %s needs ClickHouse %d.%d or newer; this server is %s", kind, need[0], need[1], info.version.Raw)
	}
	return s.runEncoded(ctx, c, queryRun{sql: "EXPLAIN " + kind + " " + a.Query}) // ctx and c are begin's already
}

// explainSince is the first ClickHouse version with each EXPLAIN kind.
var explainSince = map[string][2]int{"PLAN": {20, 6}, "PIPELINE": {20, 6}, "SYNTAX": {20, 6}, "ESTIMATE": {21, 9}}

// query runs q for the request's caller and answers with text and
// structured content.
func (s *Server) query(ctx context.Context, req *mcp.CallToolRequest, q queryRun) (*mcp.CallToolResult, error) {
	ctx, done, c, err := begin(ctx, req.Extra)
	defer done()
	if err != nil {
		return nil, err
	}
	return s.runEncoded(ctx, c, q)
}

// addTool adds a typed tool. Its input schema is given as JSON, made
// once: the SDK reads a tool's input schema on every call (for
// x-mcp-header annotations) by marshaling it, and a *jsonschema.Schema is
// slow to marshal.
func addTool[In, Out any](s *Server, t *mcp.Tool, h mcp.ToolHandlerFor[In, Out]) {
	t.InputSchema, _ = inputSchema[In](t.Name)
	mcp.AddTool(s.sdk, t, h)
}

// addEncodedTool adds a tool that returns its answer encoded already
// (runEncoded). The SDK's typed tools marshal the output value, decode it
// again and check it against the output schema: on a big answer that
// costs several times its size in memory, and time. The arguments are
// checked against In's schema as the typed tools' are, and an error is a
// tool error as there.
func addEncodedTool[In any](s *Server, t *mcp.Tool, h func(context.Context, *mcp.CallToolRequest, In) (*mcp.CallToolResult, error)) {
	var resolved *jsonschema.Resolved
	t.InputSchema, resolved = inputSchema[In](t.Name)
	s.sdk.AddTool(t, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		in, err := decodeArguments[In](req.Params.Arguments, resolved)
		if err == nil {
			var res *mcp.CallToolResult
			if res, err = h(ctx, req, in); err == nil {
				return res, nil
			}
		}
		var res mcp.CallToolResult
		res.SetError(err)
		return &res, nil
	})
}

// inputSchema is In's inferred schema, as JSON and resolved.
func inputSchema[In any](tool string) (json.RawMessage, *jsonschema.Resolved) {
	schema, err := jsonschema.For[In](nil)
	if err == nil {
		var raw json.RawMessage
		if raw, err = json.Marshal(schema); err == nil {
			var resolved *jsonschema.Resolved
			if resolved, err = schema.Resolve(nil); err == nil {
				return raw, resolved
			}
		}
	}
	panic(fmt.Sprintf("input schema of %s: %v", tool, err))
}

// decodeArguments checks a call's arguments against their schema and
// decodes them.
func decodeArguments[In any](raw json.RawMessage, schema *jsonschema.Resolved) (In, error) {
	var in In
	args := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &args); err != nil {
			return in, fmt.Errorf("unmarshaling arguments: %w", err)
		}
	}
	if err := schema.Validate(args); err != nil {
		return in, fmt.Errorf("validating \"arguments\": %v", err)
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &in); err != nil {
			return in, err
		}
	}
	return in, nil
}

func textResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}
