"""fleet controller: hosts, the controller's ticks, actions, leases, replica status and holds; plans get a host

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 22:41:19.360577
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import db.base

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('controller_leases',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('acquired_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_controller_leases'))
    )
    op.create_table('controller_ticks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pool', sa.String(length=200), nullable=False),
    sa.Column('now', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('status', sa.Enum('running', 'done', 'failed', 'skipped', 'abandoned', name='tick_status', native_enum=False, length=16), nullable=False),
    sa.Column('started_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('orchestrator_run_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_controller_ticks'))
    )
    with op.batch_alter_table('controller_ticks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_controller_ticks_pool'), ['pool'], unique=False)

    op.create_table('fleet_holds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pool', sa.String(length=200), nullable=False),
    sa.Column('host', sa.String(length=200), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('until', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fleet_holds'))
    )
    with op.batch_alter_table('fleet_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fleet_holds_pool'), ['pool'], unique=False)

    op.create_table('fleet_replicas',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pool', sa.String(length=200), nullable=False),
    sa.Column('host', sa.String(length=200), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('phase', sa.Enum('pending', 'warming', 'ready', 'backoff', 'failed', 'unloaded', name='replica_phase', native_enum=False, length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_ready_at', db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fleet_replicas')),
    sa.UniqueConstraint('host', 'model', name=op.f('uq_fleet_replicas_host_model'))
    )
    with op.batch_alter_table('fleet_replicas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fleet_replicas_pool'), ['pool'], unique=False)

    op.create_table('hosts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('pool', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.Enum('prewarm', 'triton', 'kserve', 'mlserver', 'v2', name='host_kind', native_enum=False, length=16), nullable=False),
    sa.Column('versioned_routes', sa.Boolean(), nullable=True),
    sa.Column('device_class', sa.String(length=200), nullable=False),
    sa.Column('memory_mb', sa.Float(), nullable=True),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('state', sa.Enum('up', 'draining', 'down', name='host_state', native_enum=False, length=16), nullable=False),
    sa.Column('max_concurrent_warmups', sa.Integer(), nullable=False),
    sa.Column('heartbeat_s', sa.Float(), nullable=True),
    sa.Column('last_seen_at', db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hosts')),
    sa.UniqueConstraint('name', name=op.f('uq_hosts_name'))
    )
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hosts_pool'), ['pool'], unique=False)

    op.create_table('controller_actions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tick_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('pool', sa.String(length=200), nullable=False),
    sa.Column('host', sa.String(length=200), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=100), nullable=True),
    sa.Column('kind', sa.Enum('warm', 'repair', 'unload', 'replace', 'rollout', 'rollback', 'manual', name='action_kind', native_enum=False, length=16), nullable=False),
    sa.Column('outcome', sa.Enum('started', 'ok', 'failed', 'skipped', 'abandoned', name='action_outcome', native_enum=False, length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('plan_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('warm_run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('started_at', db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['plan_id'], ['warm_plans.id'], name=op.f('fk_controller_actions_plan_id_warm_plans'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tick_id'], ['controller_ticks.id'], name=op.f('fk_controller_actions_tick_id_controller_ticks'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['warm_run_id'], ['warm_runs.id'], name=op.f('fk_controller_actions_warm_run_id_warm_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_controller_actions'))
    )
    with op.batch_alter_table('controller_actions', schema=None) as batch_op:
        batch_op.create_index('ix_controller_actions_pool_started_at', ['pool', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_controller_actions_tick_id'), ['tick_id'], unique=False)

    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rolled_back_at', db.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('rolled_back_reason', sa.Text(), nullable=True))

    with op.batch_alter_table('warm_plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('host', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('pool', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('ready_at', db.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f('ix_warm_plans_host'), ['host'], unique=False)
        batch_op.create_index(batch_op.f('ix_warm_plans_pool'), ['pool'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('warm_plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_warm_plans_pool'))
        batch_op.drop_index(batch_op.f('ix_warm_plans_host'))
        batch_op.drop_column('last_error')
        batch_op.drop_column('ready_at')
        batch_op.drop_column('pool')
        batch_op.drop_column('host')

    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('rolled_back_reason')
        batch_op.drop_column('rolled_back_at')

    with op.batch_alter_table('controller_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_controller_actions_tick_id'))
        batch_op.drop_index('ix_controller_actions_pool_started_at')

    op.drop_table('controller_actions')
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hosts_pool'))

    op.drop_table('hosts')
    with op.batch_alter_table('fleet_replicas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fleet_replicas_pool'))

    op.drop_table('fleet_replicas')
    with op.batch_alter_table('fleet_holds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fleet_holds_pool'))

    op.drop_table('fleet_holds')
    with op.batch_alter_table('controller_ticks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_controller_ticks_pool'))

    op.drop_table('controller_ticks')
    op.drop_table('controller_leases')
