-- Schema version 2 of the agent-finops ledger, as agent-finops 0.1.0 (SQLModel tables) created it on sqlite.
-- Test data for the v2 -> v3 migration test (tests/test_sql_ledger.py).

CREATE TABLE finops_approvals (
	approval_id VARCHAR(64) NOT NULL, 
	trace_id VARCHAR(64) NOT NULL, 
	thread_id VARCHAR(200), 
	rule_id VARCHAR(200) NOT NULL, 
	scope JSON NOT NULL, 
	unit VARCHAR(8) NOT NULL, 
	spent VARCHAR(64) NOT NULL, 
	"limit" VARCHAR(64) NOT NULL, 
	estimate VARCHAR(64) NOT NULL, 
	policy_version VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	message TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	decided_by VARCHAR(200), 
	decided_at DATETIME, 
	reason TEXT, 
	extra VARCHAR(64), 
	resume_target VARCHAR(400), 
	checkpoint_url TEXT, 
	counter_key TEXT, 
	applied_at DATETIME, 
	tags JSON NOT NULL, 
	PRIMARY KEY (approval_id)
);
CREATE INDEX ix_finops_approvals_created_at ON finops_approvals (created_at);
CREATE INDEX ix_finops_approvals_status ON finops_approvals (status);
CREATE INDEX ix_finops_approvals_trace_id ON finops_approvals (trace_id);
CREATE TABLE finops_budget_counters (
	counter_key VARCHAR(512) NOT NULL, 
	unit VARCHAR(16) NOT NULL, 
	"limit" VARCHAR(64) NOT NULL, 
	spent VARCHAR(64) NOT NULL, 
	reserved VARCHAR(64) NOT NULL, 
	window_end DATETIME, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (counter_key)
)
 WITHOUT ROWID;
CREATE TABLE finops_cost_events (
	event_id VARCHAR(96) NOT NULL, 
	trace_id VARCHAR(64) NOT NULL, 
	span_id VARCHAR(64) NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	provider VARCHAR(64), 
	created_at DATETIME NOT NULL, 
	node_path TEXT, 
	cost VARCHAR(64), 
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
	user VARCHAR(256), 
	tenant VARCHAR(256), 
	environment VARCHAR(256), 
	PRIMARY KEY (event_id)
);
CREATE INDEX ix_finops_cost_events_created_at ON finops_cost_events (created_at);
CREATE INDEX ix_finops_cost_events_trace_id ON finops_cost_events (trace_id);
CREATE INDEX ix_finops_events_project_created ON finops_cost_events (project, created_at);
CREATE INDEX ix_finops_events_team_created ON finops_cost_events (team, created_at);
CREATE TABLE finops_decisions (
	decision_id VARCHAR(128) NOT NULL, 
	trace_id VARCHAR(64) NOT NULL, 
	call_id VARCHAR(96), 
	action VARCHAR(16) NOT NULL, 
	rule_id VARCHAR(200), 
	policy_version VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	scope JSON NOT NULL, 
	"limit" VARCHAR(64), 
	observed VARCHAR(64), 
	estimate VARCHAR(64), 
	unit VARCHAR(8) NOT NULL, 
	message TEXT NOT NULL, 
	actor VARCHAR(200) NOT NULL, 
	tags JSON NOT NULL, 
	PRIMARY KEY (decision_id)
);
CREATE INDEX ix_finops_decisions_created_at ON finops_decisions (created_at);
CREATE INDEX ix_finops_decisions_trace_id ON finops_decisions (trace_id);
CREATE TABLE finops_reservations (
	call_id VARCHAR(128) NOT NULL, 
	trace_id VARCHAR(64), 
	state VARCHAR(16) NOT NULL, 
	claims JSON NOT NULL, 
	actual JSON, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	PRIMARY KEY (call_id)
)
 WITHOUT ROWID;
CREATE INDEX ix_finops_reservations_open ON finops_reservations (expires_at) WHERE state = 'reserved';
CREATE TABLE finops_runs (
	trace_id VARCHAR(64) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	started_at DATETIME NOT NULL, 
	ended_at DATETIME, 
	status VARCHAR(16) NOT NULL, 
	error TEXT, 
	tags JSON NOT NULL, 
	PRIMARY KEY (trace_id)
);
CREATE INDEX ix_finops_runs_started_at ON finops_runs (started_at);
CREATE TABLE finops_schema (
	id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE finops_spans (
	span_id VARCHAR(64) NOT NULL, 
	trace_id VARCHAR(64) NOT NULL, 
	parent_span_id VARCHAR(64), 
	name VARCHAR(200) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	node_path TEXT, 
	started_at DATETIME NOT NULL, 
	ended_at DATETIME, 
	status VARCHAR(16) NOT NULL, 
	error TEXT, 
	tags JSON NOT NULL, 
	PRIMARY KEY (span_id)
);
CREATE INDEX ix_finops_spans_trace_id ON finops_spans (trace_id);
INSERT INTO finops_schema (id, version) VALUES (1, 2);
