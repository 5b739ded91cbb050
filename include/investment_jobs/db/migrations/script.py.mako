"""${message}

Written ${create_date}.
"""

from alembic import op

revision, down_revision = ${repr(up_revision)}, ${repr(down_revision)}  # the file name starts with the revision


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
