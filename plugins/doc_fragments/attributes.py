# Copyright: (c) pyhost.scgi contributors
# MIT License (see LICENSE)
"""The attributes that the collection's modules share."""

from __future__ import annotations


class ModuleDocFragment:
    # A module that reads the host and changes nothing.
    READ_ONLY = r"""
attributes:
  check_mode:
    description: Reads the same in check mode.
    support: full
  diff_mode:
    description: Changes nothing, so shows no diff.
    support: none
"""

    # A module that works through many apps in one call, and says which ones changed.
    PER_APP = r"""
attributes:
  diff_mode:
    description: No diff; RV(changed_apps) says which apps changed.
    support: none
"""

    # A module that writes keys: it never shows what it writes.
    SECRET = r"""
attributes:
  diff_mode:
    description: No diff; a key is never shown.
    support: none
"""
