"""Serializers of the member merge endpoints (``api.views.merge``, docs/merge.md)."""

from rest_framework import serializers


class MergeIn(serializers.Serializer):
    keep = serializers.CharField(max_length=40, help_text="Member number of the record to keep.")
    merged = serializers.CharField(
        max_length=40, help_text="Member number of the record merged into it (closed, kept as a pointer)."
    )
    reason = serializers.CharField(max_length=200, help_text="Why: required, kept on the merge and in the audit.")


class MergeUndoIn(serializers.Serializer):
    reason = serializers.CharField(max_length=200, help_text="Why the merge is undone: required.")


class MergeMemberOut(serializers.Serializer):
    member_number = serializers.CharField()
    name = serializers.CharField()


class MovedPointsOut(serializers.Serializer):
    available = serializers.IntegerField(help_text="Available points (or growth) moved.")
    pending = serializers.IntegerField(help_text="Pending points moved, still pending until their own dates.")


class MergeOut(serializers.Serializer):
    id = serializers.IntegerField()
    keep = MergeMemberOut()
    merged = MergeMemberOut()
    reason = serializers.CharField()
    actor = serializers.CharField(allow_null=True, help_text="The staff user's name.")
    created_at = serializers.DateTimeField()
    undo_until = serializers.DateTimeField(help_text="The end of the undo window (LOYALTY_MERGE_UNDO_DAYS).")
    undone_at = serializers.DateTimeField(allow_null=True)
    undo_reason = serializers.CharField()
    points = MovedPointsOut()
    growth = MovedPointsOut()
    moved = serializers.DictField(
        child=serializers.IntegerField(), help_text="Rows moved by kind: orders, coupons, check_ins, badges, ..."
    )
    replayed = serializers.BooleanField(help_text="True when this merge (or undo) had been made already.")
