"""MPPS links to several scheduled steps (group case); outbox ordering key and pending-since.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:10:00

"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('performed_step_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('performed_step_fk', sa.Integer(), nullable=False),
    sa.Column('step_fk', sa.Integer(), nullable=False),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('linked_by', sa.String(length=120), nullable=False),
    sa.ForeignKeyConstraint(['performed_step_fk'], ['performed_steps.id'], name=op.f('fk_performed_step_links_performed_step_fk_performed_steps')),
    sa.ForeignKeyConstraint(['step_fk'], ['scheduled_steps.id'], name=op.f('fk_performed_step_links_step_fk_scheduled_steps')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_performed_step_links')),
    sa.UniqueConstraint('performed_step_fk', 'step_fk', name=op.f('uq_performed_step_links_performed_step_fk_step_fk'))
    )
    op.create_index(op.f('ix_performed_step_links_performed_step_fk'), 'performed_step_links', ['performed_step_fk'], unique=False)
    op.create_index(op.f('ix_performed_step_links_step_fk'), 'performed_step_links', ['step_fk'], unique=False)
    op.execute(
        "INSERT INTO performed_step_links (performed_step_fk, step_fk, linked_at, linked_by) "
        "SELECT id, step_fk, created_at, calling_ae FROM performed_steps WHERE step_fk IS NOT NULL"
    )
    op.drop_index(op.f('ix_performed_steps_order_fk'), table_name='performed_steps')
    op.drop_index(op.f('ix_performed_steps_step_fk'), table_name='performed_steps')
    with op.batch_alter_table('performed_steps') as batch:
        batch.drop_constraint(op.f('fk_performed_steps_order_fk_orders'), type_='foreignkey')
        batch.drop_constraint(op.f('fk_performed_steps_step_fk_scheduled_steps'), type_='foreignkey')
        batch.drop_column('order_fk')
        batch.drop_column('step_fk')

    with op.batch_alter_table('outbox_tasks') as batch:
        batch.add_column(sa.Column('ordering_key', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('pending_since', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE outbox_tasks SET pending_since = created_at")
    with op.batch_alter_table('outbox_tasks') as batch:
        batch.alter_column('pending_since', existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index(op.f('ix_outbox_tasks_ordering_key'), 'outbox_tasks', ['ordering_key'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_outbox_tasks_ordering_key'), table_name='outbox_tasks')
    with op.batch_alter_table('outbox_tasks') as batch:
        batch.drop_column('pending_since')
        batch.drop_column('ordering_key')

    with op.batch_alter_table('performed_steps') as batch:
        batch.add_column(sa.Column('step_fk', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('order_fk', sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f('fk_performed_steps_step_fk_scheduled_steps'), 'scheduled_steps', ['step_fk'], ['id'])
        batch.create_foreign_key(op.f('fk_performed_steps_order_fk_orders'), 'orders', ['order_fk'], ['id'])
    op.create_index(op.f('ix_performed_steps_step_fk'), 'performed_steps', ['step_fk'], unique=False)
    op.create_index(op.f('ix_performed_steps_order_fk'), 'performed_steps', ['order_fk'], unique=False)
    op.execute(
        "UPDATE performed_steps SET step_fk = (SELECT MIN(l.step_fk) FROM performed_step_links l "
        "WHERE l.performed_step_fk = performed_steps.id)"
    )
    op.execute(
        "UPDATE performed_steps SET order_fk = (SELECT s.order_fk FROM scheduled_steps s "
        "WHERE s.id = performed_steps.step_fk)"
    )
    op.drop_index(op.f('ix_performed_step_links_step_fk'), table_name='performed_step_links')
    op.drop_index(op.f('ix_performed_step_links_performed_step_fk'), table_name='performed_step_links')
    op.drop_table('performed_step_links')
