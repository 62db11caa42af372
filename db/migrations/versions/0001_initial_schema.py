"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 10:57:58.674902
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import db.base


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('forecast_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('level', sa.Float(), nullable=False),
    sa.Column('interval_seconds', sa.Integer(), nullable=False),
    sa.Column('models_count', sa.Integer(), nullable=False),
    sa.Column('fallbacks', sa.Integer(), nullable=False),
    sa.Column('warnings', sa.Integer(), nullable=False),
    sa.Column('wall_seconds', sa.Float(), nullable=True),
    sa.Column('orchestrator_run_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_forecast_runs'))
    )
    op.create_table('models',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('artifact_uri', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('loader', sa.String(length=32), nullable=False),
    sa.Column('factory', sa.String(length=300), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('sla_p99_ms', sa.Float(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('device_memory_mb', sa.Float(), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    sa.UniqueConstraint('name', 'version', name=op.f('uq_models_name_version'))
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_models_name'), ['name'], unique=False)

    op.create_table('telemetry',
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('bucket_start', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('bucket_seconds', sa.Integer(), nullable=False),
    sa.Column('requests', sa.Float(), nullable=False),
    sa.Column('p50_ms', sa.Float(), nullable=True),
    sa.Column('p99_ms', sa.Float(), nullable=True),
    sa.Column('cold_starts', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('model', 'bucket_start', name=op.f('pk_telemetry'))
    )
    op.create_table('forecast_points',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('timestamp', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('yhat', sa.Float(), nullable=False),
    sa.Column('lo', sa.Float(), nullable=False),
    sa.Column('hi', sa.Float(), nullable=False),
    sa.Column('level', sa.Float(), nullable=False),
    sa.Column('method', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['forecast_runs.id'], name=op.f('fk_forecast_points_run_id_forecast_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_forecast_points')),
    sa.UniqueConstraint('run_id', 'model', 'timestamp', name=op.f('uq_forecast_points_run_id_model_timestamp'))
    )
    with op.batch_alter_table('forecast_points', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_forecast_points_run_id'), ['run_id'], unique=False)

    op.create_table('warm_plans',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('window_start', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('window_end', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('replicas', sa.Integer(), nullable=False),
    sa.Column('lead_seconds', sa.Float(), nullable=False),
    sa.Column('expected_demand', sa.Float(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.Enum('planned', 'scheduled', 'running', 'done', 'failed', 'cancelled', 'superseded', name='plan_status', native_enum=False, length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('forecast_run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('orchestrator_run_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['forecast_run_id'], ['forecast_runs.id'], name=op.f('fk_warm_plans_forecast_run_id_forecast_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_warm_plans')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_warm_plans_idempotency_key'))
    )
    with op.batch_alter_table('warm_plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_warm_plans_model'), ['model'], unique=False)

    op.create_table('warm_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('plan_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('trigger', sa.Enum('scheduled', 'manual', 'post_deploy', name='warm_trigger', native_enum=False, length=16), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=False),
    sa.Column('target', sa.String(length=500), nullable=False),
    sa.Column('device_class', sa.String(length=200), nullable=True),
    sa.Column('started_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.Enum('running', 'ready', 'not_ready', 'failed', name='warm_status', native_enum=False, length=16), nullable=False),
    sa.Column('stage_seconds', sa.JSON(), nullable=False),
    sa.Column('cold_first_request_ms', sa.Float(), nullable=True),
    sa.Column('warm_first_request_ms', sa.Float(), nullable=True),
    sa.Column('steady_p50_ms', sa.Float(), nullable=True),
    sa.Column('steady_p99_ms', sa.Float(), nullable=True),
    sa.Column('baseline_p50_ms', sa.Float(), nullable=True),
    sa.Column('latency_delta_ms', sa.Float(), nullable=True),
    sa.Column('time_to_ready_s', sa.Float(), nullable=True),
    sa.Column('ready', sa.Boolean(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('report', sa.JSON(), nullable=True),
    sa.Column('orchestrator_run_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['plan_id'], ['warm_plans.id'], name=op.f('fk_warm_runs_plan_id_warm_plans'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_warm_runs'))
    )
    with op.batch_alter_table('warm_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_warm_runs_model'), ['model'], unique=False)
        batch_op.create_index(batch_op.f('ix_warm_runs_plan_id'), ['plan_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('warm_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_warm_runs_plan_id'))
        batch_op.drop_index(batch_op.f('ix_warm_runs_model'))

    op.drop_table('warm_runs')
    with op.batch_alter_table('warm_plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_warm_plans_model'))

    op.drop_table('warm_plans')
    with op.batch_alter_table('forecast_points', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_forecast_points_run_id'))

    op.drop_table('forecast_points')
    op.drop_table('telemetry')
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_models_name'))

    op.drop_table('models')
    op.drop_table('forecast_runs')
