package native

import (
	"strconv"
	"strings"
)

// ClickHouse before protocol revision 54429 (19.x) sends the Query
// packet's settings in binary: each name, then its value in the
// setting's own type, so that a reader must know every setting's type to
// find where the next begins. These are ClickHouse 18.16's settings
// (dbms/src/Interpreters/Settings.h of 18.16, the names checked against
// its system.settings). A setting not listed cannot be relayed in that
// format and is refused.

type settingKind int

const (
	kindVarUInt settingKind = iota + 1 // UInt64, Bool, MaxThreads, Seconds, Milliseconds: VarUInt
	kindVarInt                         // Int64: zigzag VarInt
	kindFloat                          // Float: as text
	kindText                           // String, Char and the enums: as text
)

// legacySettings are ClickHouse 18.16's settings by their wire type.
var legacySettings = map[string]settingKind{
	// kindVarUInt
	"min_compress_block_size": kindVarUInt, "max_compress_block_size": kindVarUInt, "max_block_size": kindVarUInt, "max_insert_block_size": kindVarUInt, "min_insert_block_size_rows": kindVarUInt, "min_insert_block_size_bytes": kindVarUInt, "max_threads": kindVarUInt, "max_read_buffer_size": kindVarUInt, "max_distributed_connections": kindVarUInt, "max_query_size": kindVarUInt, "interactive_delay": kindVarUInt, "connect_timeout": kindVarUInt, "connect_timeout_with_failover_ms": kindVarUInt, "receive_timeout": kindVarUInt, "send_timeout": kindVarUInt, "tcp_keep_alive_timeout": kindVarUInt, "queue_max_wait_ms": kindVarUInt, "poll_interval": kindVarUInt, "distributed_connections_pool_size": kindVarUInt, "connections_with_failover_max_tries": kindVarUInt, "extremes": kindVarUInt, "use_uncompressed_cache": kindVarUInt, "replace_running_query": kindVarUInt, "background_pool_size": kindVarUInt, "background_schedule_pool_size": kindVarUInt, "distributed_directory_monitor_sleep_time_ms": kindVarUInt, "distributed_directory_monitor_batch_inserts": kindVarUInt, "optimize_move_to_prewhere": kindVarUInt, "replication_alter_partitions_sync": kindVarUInt, "replication_alter_columns_timeout": kindVarUInt, "compile": kindVarUInt, "compile_expressions": kindVarUInt, "min_count_to_compile": kindVarUInt, "group_by_two_level_threshold": kindVarUInt, "group_by_two_level_threshold_bytes": kindVarUInt, "distributed_aggregation_memory_efficient": kindVarUInt, "aggregation_memory_efficient_merge_threads": kindVarUInt, "max_parallel_replicas": kindVarUInt, "parallel_replicas_count": kindVarUInt, "parallel_replica_offset": kindVarUInt, "skip_unavailable_shards": kindVarUInt, "distributed_group_by_no_merge": kindVarUInt, "merge_tree_min_rows_for_concurrent_read": kindVarUInt, "merge_tree_min_rows_for_seek": kindVarUInt, "merge_tree_coarse_index_granularity": kindVarUInt, "merge_tree_max_rows_to_use_cache": kindVarUInt, "merge_tree_uniform_read_distribution": kindVarUInt, "mysql_max_rows_to_insert": kindVarUInt, "optimize_min_equality_disjunction_chain_length": kindVarUInt, "min_bytes_to_use_direct_io": kindVarUInt, "force_index_by_date": kindVarUInt, "force_primary_key": kindVarUInt, "mark_cache_min_lifetime": kindVarUInt, "priority": kindVarUInt, "log_queries": kindVarUInt, "log_queries_cut_to_length": kindVarUInt, "max_concurrent_queries_for_user": kindVarUInt, "insert_deduplicate": kindVarUInt, "insert_sample_with_metadata": kindVarUInt, "insert_quorum": kindVarUInt, "insert_quorum_timeout": kindVarUInt, "select_sequential_consistency": kindVarUInt, "table_function_remote_max_addresses": kindVarUInt, "read_backoff_min_latency_ms": kindVarUInt, "read_backoff_max_throughput": kindVarUInt, "read_backoff_min_interval_between_events_ms": kindVarUInt, "read_backoff_min_events": kindVarUInt, "enable_http_compression": kindVarUInt, "http_native_compression_disable_checksumming_on_decompress": kindVarUInt, "output_format_write_statistics": kindVarUInt, "add_http_cors_header": kindVarUInt, "input_format_skip_unknown_fields": kindVarUInt, "input_format_import_nested_json": kindVarUInt, "input_format_values_interpret_expressions": kindVarUInt, "output_format_json_quote_64bit_integers": kindVarUInt, "output_format_json_quote_denormals": kindVarUInt, "output_format_json_escape_forward_slashes": kindVarUInt, "output_format_pretty_max_rows": kindVarUInt, "output_format_pretty_max_column_pad_width": kindVarUInt, "output_format_pretty_color": kindVarUInt, "use_client_time_zone": kindVarUInt, "send_progress_in_http_headers": kindVarUInt, "http_headers_progress_interval_ms": kindVarUInt, "fsync_metadata": kindVarUInt, "input_format_allow_errors_num": kindVarUInt, "join_use_nulls": kindVarUInt, "preferred_block_size_bytes": kindVarUInt, "max_replica_delay_for_distributed_queries": kindVarUInt, "fallback_to_stale_replicas_for_distributed_queries": kindVarUInt, "preferred_max_column_in_block_size_bytes": kindVarUInt, "insert_distributed_sync": kindVarUInt, "insert_distributed_timeout": kindVarUInt, "stream_flush_interval_ms": kindVarUInt, "insert_allow_materialized_columns": kindVarUInt, "http_connection_timeout": kindVarUInt, "http_send_timeout": kindVarUInt, "http_receive_timeout": kindVarUInt, "optimize_throw_if_noop": kindVarUInt, "use_index_for_in_with_subqueries": kindVarUInt, "empty_result_for_aggregation_by_empty_set": kindVarUInt, "allow_distributed_ddl": kindVarUInt, "odbc_max_field_size": kindVarUInt, "max_rows_to_read": kindVarUInt, "max_bytes_to_read": kindVarUInt, "max_rows_to_group_by": kindVarUInt, "max_bytes_before_external_group_by": kindVarUInt, "max_rows_to_sort": kindVarUInt, "max_bytes_to_sort": kindVarUInt, "max_bytes_before_external_sort": kindVarUInt, "max_bytes_before_remerge_sort": kindVarUInt, "max_result_rows": kindVarUInt, "max_result_bytes": kindVarUInt, "max_execution_time": kindVarUInt, "min_execution_speed": kindVarUInt, "timeout_before_checking_execution_speed": kindVarUInt, "max_columns_to_read": kindVarUInt, "max_temporary_columns": kindVarUInt, "max_temporary_non_const_columns": kindVarUInt, "max_subquery_depth": kindVarUInt, "max_pipeline_depth": kindVarUInt, "max_ast_depth": kindVarUInt, "max_ast_elements": kindVarUInt, "max_expanded_ast_elements": kindVarUInt, "readonly": kindVarUInt, "max_rows_in_set": kindVarUInt, "max_bytes_in_set": kindVarUInt, "max_rows_in_join": kindVarUInt, "max_bytes_in_join": kindVarUInt, "max_rows_to_transfer": kindVarUInt, "max_bytes_to_transfer": kindVarUInt, "max_rows_in_distinct": kindVarUInt, "max_bytes_in_distinct": kindVarUInt, "max_memory_usage": kindVarUInt, "max_memory_usage_for_user": kindVarUInt, "max_memory_usage_for_all_queries": kindVarUInt, "max_network_bandwidth": kindVarUInt, "max_network_bytes": kindVarUInt, "max_network_bandwidth_for_user": kindVarUInt, "max_network_bandwidth_for_all_users": kindVarUInt, "format_csv_allow_single_quotes": kindVarUInt, "format_csv_allow_double_quotes": kindVarUInt, "log_profile_events": kindVarUInt, "log_query_settings": kindVarUInt, "log_query_threads": kindVarUInt, "enable_optimize_predicate_expression": kindVarUInt, "low_cardinality_max_dictionary_size": kindVarUInt, "low_cardinality_use_single_dictionary_for_part": kindVarUInt, "allow_experimental_low_cardinality_type": kindVarUInt, "decimal_check_overflow": kindVarUInt, "prefer_localhost_replica": kindVarUInt, "max_fetch_partition_retries_count": kindVarUInt, "asterisk_left_columns_only": kindVarUInt, "http_max_multipart_form_data_size": kindVarUInt, "calculate_text_stack_trace": kindVarUInt, "allow_ddl": kindVarUInt, "parallel_view_processing": kindVarUInt, "enable_debug_queries": kindVarUInt, "low_cardinality_allow_in_native_format": kindVarUInt,
	// kindVarInt
	"network_zstd_compression_level": kindVarInt, "http_zlib_compression_level": kindVarInt, "distributed_ddl_task_timeout": kindVarInt,
	// kindFloat
	"totals_auto_threshold": kindFloat, "max_streams_to_max_threads_ratio": kindFloat, "memory_tracker_fault_probability": kindFloat, "input_format_allow_errors_ratio": kindFloat,
	// kindText
	"load_balancing": kindText, "totals_mode": kindText, "network_compression_method": kindText, "distributed_product_mode": kindText, "count_distinct_implementation": kindText, "join_default_strictness": kindText, "format_schema": kindText, "read_overflow_mode": kindText, "group_by_overflow_mode": kindText, "sort_overflow_mode": kindText, "result_overflow_mode": kindText, "timeout_overflow_mode": kindText, "set_overflow_mode": kindText, "join_overflow_mode": kindText, "transfer_overflow_mode": kindText, "distinct_overflow_mode": kindText, "format_csv_delimiter": kindText, "date_time_input_format": kindText, "send_logs_level": kindText,
}

// minLegacyRevision is the oldest server whose settings legacySettings
// describes (18.16, revision 54412); older ones are sent no client settings.
const minLegacyRevision = 54412

// setting is one Query packet setting as the client sent it.
type setting struct {
	name  string
	value string // as text; VarUInt and VarInt values in decimal
	flags uint64 // strings format only
}

// legacyValue turns a text value into a legacy setting's wire value,
// appended to b.
func legacyValue(b []byte, kind settingKind, value string) ([]byte, bool) {
	switch kind {
	case kindVarUInt:
		v, ok := parseUInt(value)
		if !ok {
			return b, false
		}
		return appendUVarInt(b, v), true
	case kindVarInt:
		v, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return b, false
		}
		return appendUVarInt(b, uint64((v<<1)^(v>>63))), true
	}
	return appendString(b, value), true
}

// parseUInt reads an unsigned setting value: a number, or a boolean word
// (ClickHouse's Bool settings take true/false).
func parseUInt(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "true":
		return 1, true
	case "false":
		return 0, true
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

func appendUVarInt(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendString(b []byte, s string) []byte {
	return append(appendUVarInt(b, uint64(len(s))), s...)
}

// sameValue reports whether a client's value for a fixed setting is the
// fixed value: the same text (without case) or the same number.
func sameValue(a, b string) bool {
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if strings.EqualFold(a, b) {
		return true
	}
	x, ok1 := parseUInt(a)
	y, ok2 := parseUInt(b)
	if ok1 && ok2 {
		return x == y
	}
	f, err1 := strconv.ParseFloat(a, 64)
	g, err2 := strconv.ParseFloat(b, 64)
	return err1 == nil && err2 == nil && f == g
}
