"""Initial schema: patients, orders, worklist, MPPS, outbox, HL7 journal, AEs, users, audit.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 08:28:40.853556

"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every table of the broker."""
    op.create_table('patients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('issuer', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('birth_date', sa.String(length=8), nullable=False),
    sa.Column('sex', sa.String(length=1), nullable=False),
    sa.Column('merged_into_id', sa.Integer(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['merged_into_id'], ['patients.id'], name=op.f('fk_patients_merged_into_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients')),
    sa.UniqueConstraint('patient_id', 'issuer', name=op.f('uq_patients_patient_id_issuer'))
    )
    op.create_table('remote_aes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ae_title', sa.String(length=16), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('is_station', sa.Boolean(), nullable=False),
    sa.Column('is_ian_destination', sa.Boolean(), nullable=False),
    sa.Column('is_mpps_forward', sa.Boolean(), nullable=False),
    sa.Column('own_items_only', sa.Boolean(), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_remote_aes')),
    sa.UniqueConstraint('ae_title', name=op.f('uq_remote_aes_ae_title'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_fk', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_fk'], ['users.id'], name=op.f('fk_api_tokens_user_fk_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_index(op.f('ix_api_tokens_user_fk'), 'api_tokens', ['user_fk'], unique=False)

    op.create_table('orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_fk', sa.Integer(), nullable=False),
    sa.Column('accession_number', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'), nullable=False),
    sa.Column('placer_order_number', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('filler_order_number', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('requesting_physician', sa.String(length=200), nullable=False),
    sa.Column('referring_physician', sa.String(length=200), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('admission_id', sa.String(length=64), nullable=False),
    sa.Column('patient_location', sa.String(length=64), nullable=False),
    sa.Column('comments', sa.Text(), nullable=False),
    sa.Column('character_set', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_fk'], ['patients.id'], name=op.f('fk_orders_patient_fk_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders'))
    )
    op.create_index(op.f('ix_orders_filler_order_number'), 'orders', ['filler_order_number'], unique=False)
    op.create_index(op.f('ix_orders_patient_fk'), 'orders', ['patient_fk'], unique=False)
    op.create_index(op.f('ix_orders_placer_order_number'), 'orders', ['placer_order_number'], unique=False)
    op.create_index('uq_orders_accession_number', 'orders', ['accession_number'], unique=True, sqlite_where=sa.text("accession_number <> ''"), postgresql_where=sa.text("accession_number <> ''"))

    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('order_fk', sa.Integer(), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['order_fk'], ['orders.id'], name=op.f('fk_audit_events_order_fk_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    op.create_index('ix_audit_events_at', 'audit_events', ['at'], unique=False)
    op.create_index('ix_audit_events_order_fk_at', 'audit_events', ['order_fk', 'at'], unique=False)

    op.create_table('hl7_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('peer', sa.String(length=80), nullable=False),
    sa.Column('sending_application', sa.String(length=227), nullable=False),
    sa.Column('sending_facility', sa.String(length=227), nullable=False),
    sa.Column('control_id', sa.String(length=199), nullable=False),
    sa.Column('message_type', sa.String(length=30), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('ack_code', sa.String(length=2), nullable=False),
    sa.Column('ack', sa.LargeBinary(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('order_fk', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['order_fk'], ['orders.id'], name=op.f('fk_hl7_messages_order_fk_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hl7_messages')),
    sa.UniqueConstraint('sending_application', 'sending_facility', 'control_id', name=op.f('uq_hl7_messages_sending_application_sending_facility_control_id'))
    )
    op.create_index(op.f('ix_hl7_messages_order_fk'), 'hl7_messages', ['order_fk'], unique=False)
    op.create_index(op.f('ix_hl7_messages_received_at'), 'hl7_messages', ['received_at'], unique=False)

    op.create_table('requested_procedures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_fk', sa.Integer(), nullable=False),
    sa.Column('requested_procedure_id', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'), nullable=False),
    sa.Column('code_value', sa.String(length=16), nullable=False),
    sa.Column('code_scheme', sa.String(length=16), nullable=False),
    sa.Column('code_meaning', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=64), nullable=False),
    sa.Column('study_uid', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['order_fk'], ['orders.id'], name=op.f('fk_requested_procedures_order_fk_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requested_procedures')),
    sa.UniqueConstraint('study_uid', name=op.f('uq_requested_procedures_study_uid'))
    )
    op.create_index(op.f('ix_requested_procedures_order_fk'), 'requested_procedures', ['order_fk'], unique=False)

    op.create_table('scheduled_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('procedure_fk', sa.Integer(), nullable=False),
    sa.Column('order_fk', sa.Integer(), nullable=False),
    sa.Column('patient_fk', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('sps_id', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'), nullable=False),
    sa.Column('modality', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'), nullable=False),
    sa.Column('station_ae', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'), nullable=False),
    sa.Column('station_name', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'), nullable=False),
    sa.Column('start_utc', sa.DateTime(timezone=True), nullable=False),
    sa.Column('start_date', sa.String(length=8).with_variant(sa.String(length=8, collation='C'), 'postgresql'), nullable=False),
    sa.Column('start_time', sa.String(length=6).with_variant(sa.String(length=6, collation='C'), 'postgresql'), nullable=False),
    sa.Column('start_local', sa.String(length=14).with_variant(sa.String(length=14, collation='C'), 'postgresql'), nullable=False),
    sa.Column('performing_physician', sa.String(length=200).with_variant(sa.String(length=200, collation='C'), 'postgresql'), nullable=False),
    sa.Column('description', sa.String(length=64), nullable=False),
    sa.Column('protocol_value', sa.String(length=16), nullable=False),
    sa.Column('protocol_scheme', sa.String(length=16), nullable=False),
    sa.Column('protocol_meaning', sa.String(length=64), nullable=False),
    sa.Column('location', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('patient_id', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('issuer_of_patient_id', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('patient_name', sa.String(length=200).with_variant(sa.String(length=200, collation='C'), 'postgresql'), nullable=False),
    sa.Column('patient_name_folded', sa.String(length=200).with_variant(sa.String(length=200, collation='C'), 'postgresql'), nullable=False),
    sa.Column('patient_birth_date', sa.String(length=8).with_variant(sa.String(length=8, collation='C'), 'postgresql'), nullable=False),
    sa.Column('patient_sex', sa.String(length=1).with_variant(sa.String(length=1, collation='C'), 'postgresql'), nullable=False),
    sa.Column('accession_number', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'), nullable=False),
    sa.Column('requested_procedure_id', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'), nullable=False),
    sa.Column('study_uid', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('referring_physician', sa.String(length=200).with_variant(sa.String(length=200, collation='C'), 'postgresql'), nullable=False),
    sa.Column('requesting_physician', sa.String(length=200).with_variant(sa.String(length=200, collation='C'), 'postgresql'), nullable=False),
    sa.Column('admission_id', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('priority', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'), nullable=False),
    sa.Column('item', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_fk'], ['orders.id'], name=op.f('fk_scheduled_steps_order_fk_orders')),
    sa.ForeignKeyConstraint(['patient_fk'], ['patients.id'], name=op.f('fk_scheduled_steps_patient_fk_patients')),
    sa.ForeignKeyConstraint(['procedure_fk'], ['requested_procedures.id'], name=op.f('fk_scheduled_steps_procedure_fk_requested_procedures')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduled_steps')),
    sa.UniqueConstraint('study_uid', 'sps_id', name=op.f('uq_scheduled_steps_study_uid_sps_id'))
    )
    op.create_index('ix_scheduled_steps_accession_number', 'scheduled_steps', ['accession_number'], unique=False)
    op.create_index('ix_scheduled_steps_modality_start', 'scheduled_steps', ['modality', 'start_local'], unique=False)
    op.create_index(op.f('ix_scheduled_steps_order_fk'), 'scheduled_steps', ['order_fk'], unique=False)
    op.create_index(op.f('ix_scheduled_steps_patient_fk'), 'scheduled_steps', ['patient_fk'], unique=False)
    op.create_index('ix_scheduled_steps_patient_id', 'scheduled_steps', ['patient_id'], unique=False)
    op.create_index('ix_scheduled_steps_patient_name', 'scheduled_steps', ['patient_name'], unique=False)
    op.create_index('ix_scheduled_steps_patient_name_folded', 'scheduled_steps', ['patient_name_folded'], unique=False)
    op.create_index('ix_scheduled_steps_performing_physician', 'scheduled_steps', ['performing_physician'], unique=False)
    op.create_index(op.f('ix_scheduled_steps_procedure_fk'), 'scheduled_steps', ['procedure_fk'], unique=False)
    op.create_index('ix_scheduled_steps_requested_procedure_id', 'scheduled_steps', ['requested_procedure_id'], unique=False)
    op.create_index('ix_scheduled_steps_sps_id', 'scheduled_steps', ['sps_id'], unique=False)
    op.create_index('ix_scheduled_steps_start_date_time', 'scheduled_steps', ['start_date', 'start_time'], unique=False)
    op.create_index('ix_scheduled_steps_start_local', 'scheduled_steps', ['start_local'], unique=False)
    op.create_index('ix_scheduled_steps_station_start', 'scheduled_steps', ['station_ae', 'start_local'], unique=False)
    op.create_index('ix_scheduled_steps_status_start', 'scheduled_steps', ['status', 'start_local'], unique=False)

    op.create_table('performed_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sop_instance_uid', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('step_fk', sa.Integer(), nullable=True),
    sa.Column('order_fk', sa.Integer(), nullable=True),
    sa.Column('calling_ae', sa.String(length=16), nullable=False),
    sa.Column('study_uid', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('accession_number', sa.String(length=16).with_variant(sa.String(length=16, collation='C'), 'postgresql'), nullable=False),
    sa.Column('modality', sa.String(length=16), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_fk'], ['orders.id'], name=op.f('fk_performed_steps_order_fk_orders')),
    sa.ForeignKeyConstraint(['step_fk'], ['scheduled_steps.id'], name=op.f('fk_performed_steps_step_fk_scheduled_steps')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_performed_steps')),
    sa.UniqueConstraint('sop_instance_uid', name=op.f('uq_performed_steps_sop_instance_uid'))
    )
    op.create_index(op.f('ix_performed_steps_order_fk'), 'performed_steps', ['order_fk'], unique=False)
    op.create_index(op.f('ix_performed_steps_step_fk'), 'performed_steps', ['step_fk'], unique=False)

    op.create_table('outbox_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('destination', sa.String(length=120), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('order_fk', sa.Integer(), nullable=True),
    sa.Column('performed_step_fk', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['order_fk'], ['orders.id'], name=op.f('fk_outbox_tasks_order_fk_orders')),
    sa.ForeignKeyConstraint(['performed_step_fk'], ['performed_steps.id'], name=op.f('fk_outbox_tasks_performed_step_fk_performed_steps')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_tasks')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_outbox_tasks_dedupe_key'))
    )
    op.create_index(op.f('ix_outbox_tasks_order_fk'), 'outbox_tasks', ['order_fk'], unique=False)
    op.create_index(op.f('ix_outbox_tasks_performed_step_fk'), 'outbox_tasks', ['performed_step_fk'], unique=False)
    op.create_index('ix_outbox_tasks_state_next_attempt_at', 'outbox_tasks', ['state', 'next_attempt_at'], unique=False)

    op.create_table('performed_step_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('performed_step_fk', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('calling_ae', sa.String(length=16), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['performed_step_fk'], ['performed_steps.id'], name=op.f('fk_performed_step_events_performed_step_fk_performed_steps')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_performed_step_events'))
    )
    op.create_index(op.f('ix_performed_step_events_performed_step_fk'), 'performed_step_events', ['performed_step_fk'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('performed_step_events')
    op.drop_table('outbox_tasks')
    op.drop_table('performed_steps')
    op.drop_table('scheduled_steps')
    op.drop_table('requested_procedures')
    op.drop_table('hl7_messages')
    op.drop_table('audit_events')
    op.drop_table('orders')
    op.drop_table('api_tokens')
    op.drop_table('users')
    op.drop_table('remote_aes')
    op.drop_table('patients')
