-- Schema version 6 of the agent-finops ledger, as agent-finops created it on postgresql (`metadata.create_all`, commit e164454).
-- Test data for the v6 -> v7 migration test (tests/test_sql_ledger.py).

CREATE TABLE finops_schema (
	id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE finops_runs (
	trace_id VARCHAR(64) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	started_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	ended_at TIMESTAMP WITH TIME ZONE, 
	status VARCHAR(16) NOT NULL, 
	error TEXT, 
	tags JSON NOT NULL, 
	thread_id VARCHAR(200), 
	PRIMARY KEY (trace_id)
);

CREATE INDEX ix_finops_runs_thread_id ON finops_runs (thread_id);

CREATE INDEX ix_finops_runs_started_at ON finops_runs (started_at);

CREATE TABLE finops_spans (
	span_id VARCHAR(64) NOT NULL, 
	trace_id VARCHAR(64) NOT NULL, 
	parent_span_id VARCHAR(64), 
	name VARCHAR(200) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	node_path TEXT, 
	started_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	ended_at TIMESTAMP WITH TIME ZONE, 
	status VARCHAR(16) NOT NULL, 
	error TEXT, 
	tags JSON NOT NULL, 
	PRIMARY KEY (span_id)
);

CREATE INDEX ix_finops_spans_trace_id ON finops_spans (trace_id);

CREATE TABLE finops_cost_events (
	event_id VARCHAR(96) NOT NULL, 
	trace_id VARCHAR(64) NOT NULL, 
	span_id VARCHAR(64) NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	provider VARCHAR(64), 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	node_path TEXT, 
	cost NUMERIC(38, 18), 
	price_source VARCHAR(120) NOT NULL, 
	price_version VARCHAR(120) NOT NULL, 
	model_ref VARCHAR(200), 
	uncached_input_tokens BIGINT NOT NULL, 
	cache_read_tokens BIGINT NOT NULL, 
	cache_write_tokens BIGINT NOT NULL, 
	output_tokens BIGINT NOT NULL, 
	reasoning_tokens BIGINT NOT NULL, 
	units BIGINT NOT NULL, 
	usage_reported BOOLEAN NOT NULL, 
	tags JSON NOT NULL, 
	team VARCHAR(256), 
	project VARCHAR(256), 
	cost_center VARCHAR(256), 
	agent VARCHAR(256), 
	task VARCHAR(256), 
	"user" VARCHAR(256), 
	tenant VARCHAR(256), 
	environment VARCHAR(256), 
	cache_write_1h_tokens BIGINT DEFAULT 0 NOT NULL, 
	bucket VARCHAR(16), 
	cost_nano BIGINT, 
	cost_rest BIGINT, 
	policy_version VARCHAR(64), 
	span_parent_id VARCHAR(64), 
	span_name VARCHAR(200), 
	span_started_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (event_id)
);

CREATE INDEX ix_finops_cost_events_trace_id ON finops_cost_events (trace_id);

CREATE INDEX ix_finops_events_rollup ON finops_cost_events (created_at, team, agent, project, cost_center, tenant, environment, "user", bucket, kind, cost_nano, cost_rest, uncached_input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, units, trace_id, task);

CREATE TABLE finops_decisions (
	decision_id VARCHAR(128) NOT NULL, 
	trace_id VARCHAR(64) NOT NULL, 
	call_id VARCHAR(96), 
	action VARCHAR(16) NOT NULL, 
	rule_id VARCHAR(200), 
	policy_version VARCHAR(64) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	scope JSON NOT NULL, 
	"limit" NUMERIC(38, 18), 
	observed NUMERIC(38, 18), 
	estimate NUMERIC(38, 18), 
	unit VARCHAR(8) NOT NULL, 
	message TEXT NOT NULL, 
	actor VARCHAR(200) NOT NULL, 
	tags JSON NOT NULL, 
	PRIMARY KEY (decision_id)
);

CREATE INDEX ix_finops_decisions_created_at ON finops_decisions (created_at);

CREATE INDEX ix_finops_decisions_trace_id ON finops_decisions (trace_id);

CREATE TABLE finops_approvals (
	approval_id VARCHAR(64) NOT NULL, 
	trace_id VARCHAR(64) NOT NULL, 
	thread_id VARCHAR(200), 
	rule_id VARCHAR(200) NOT NULL, 
	scope JSON NOT NULL, 
	unit VARCHAR(8) NOT NULL, 
	spent NUMERIC(38, 18) NOT NULL, 
	"limit" NUMERIC(38, 18) NOT NULL, 
	estimate NUMERIC(38, 18) NOT NULL, 
	policy_version VARCHAR(64) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	message TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	decided_by VARCHAR(200), 
	decided_at TIMESTAMP WITH TIME ZONE, 
	reason TEXT, 
	extra NUMERIC(38, 18), 
	resume_target VARCHAR(400), 
	counter_key TEXT, 
	applied_at TIMESTAMP WITH TIME ZONE, 
	tags JSON NOT NULL, 
	expires_at TIMESTAMP WITH TIME ZONE, 
	on_expiry VARCHAR(16) DEFAULT 'deny' NOT NULL, 
	approvers JSON, 
	step TEXT, 
	PRIMARY KEY (approval_id)
);

CREATE INDEX ix_finops_approvals_due ON finops_approvals (expires_at) WHERE status = 'pending';

CREATE INDEX ix_finops_approvals_trace_id ON finops_approvals (trace_id);

CREATE INDEX ix_finops_approvals_created_at ON finops_approvals (created_at);

CREATE INDEX ix_finops_approvals_status ON finops_approvals (status);

CREATE TABLE finops_budget_counters (
	counter_key VARCHAR(512) NOT NULL, 
	unit VARCHAR(16) NOT NULL, 
	"limit" NUMERIC(38, 18) NOT NULL, 
	spent NUMERIC(38, 18) NOT NULL, 
	reserved NUMERIC(38, 18) NOT NULL, 
	window_end TIMESTAMP WITH TIME ZONE, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (counter_key)
);

CREATE TABLE finops_reservations (
	call_id VARCHAR(128) NOT NULL, 
	trace_id VARCHAR(64), 
	state VARCHAR(16) NOT NULL, 
	claims JSON NOT NULL, 
	actual JSON, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	expires_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	finished_at TIMESTAMP WITH TIME ZONE, 
	worker_id VARCHAR(64), 
	PRIMARY KEY (call_id)
);

CREATE INDEX ix_finops_reservations_finished ON finops_reservations (finished_at) WHERE state <> 'reserved';

CREATE INDEX ix_finops_reservations_open ON finops_reservations (expires_at) WHERE state = 'reserved';

CREATE TABLE finops_budget_workers (
	worker_id VARCHAR(64) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	pid INTEGER NOT NULL, 
	started_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	expires_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (worker_id)
);

CREATE TABLE finops_alerts (
	alert_id VARCHAR(200) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	scope JSON NOT NULL, 
	window_start TIMESTAMP WITH TIME ZONE NOT NULL, 
	window_end TIMESTAMP WITH TIME ZONE NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	severity VARCHAR(16) NOT NULL, 
	message TEXT NOT NULL, 
	observed NUMERIC(38, 18), 
	expected NUMERIC(38, 18), 
	drivers JSON NOT NULL, 
	PRIMARY KEY (alert_id)
);

CREATE INDEX ix_finops_alerts_created_at ON finops_alerts (created_at);

CREATE TABLE finops_alert_deliveries (
	alert_id VARCHAR(200) NOT NULL, 
	channel VARCHAR(200) NOT NULL, 
	PRIMARY KEY (alert_id, channel)
);

CREATE TABLE finops_budget_leases (
	worker_id VARCHAR(64) NOT NULL, 
	counter_key VARCHAR(512) NOT NULL, 
	amount NUMERIC(38, 18) NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (worker_id, counter_key)
);
