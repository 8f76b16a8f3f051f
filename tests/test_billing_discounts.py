"""Discounts through the billing core (issue 19): coupons' rules, promotion codes, the discount
line on each invoice within the discount's duration, proration with a coupon, and one
redemption per request even when two race for the last one (PostgreSQL).

Expected amounts are worked out here, with the test's own arithmetic.
"""

import math
import threading
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from portal.access import SYSTEM, Actor
from portal.billing import credits, discounts, subscriptions
from portal.errors import Conflict, NotFound, ValidationFailed
from portal.extensions import db
from portal.infra.transactions import commit, rollback
from portal.models import AuditEvent, Coupon, Discount, PromotionCode, Tenant
from tests.billing_engine_support import (
    add_plan,
    bare_tenant,
    invoices_of,
    line_amounts,
    reload,
    run_billing,
    subscribe,
    utc,
)
from tests.conftest import unique

T0 = utc(2027, 1, 10, 8, 0, 0)  # a 31-day period: Jan 10 08:00 to Feb 10 08:00 (UTC)
T1 = utc(2027, 2, 10, 8, 0, 0)
CUSTOMER = Actor(user=None, label="customer")


def coupon(**terms) -> Coupon:
    terms.setdefault("name", "Launch offer")
    name = terms.pop("name")
    made = discounts.create_coupon(SYSTEM, name, at=T0 - timedelta(days=1), **terms)
    commit()
    return made


def code_for(made: Coupon, code: str, **options) -> PromotionCode:
    promotion_code = discounts.create_promotion_code(SYSTEM, made, code, at=T0 - timedelta(days=1), **options)
    commit()
    return promotion_code


def redeem(subscription, code: str, at, **options) -> Discount:
    promotion_code = discounts.find_code(code)
    discount = discounts.apply(CUSTOMER, subscription, promotion_code.coupon, promotion_code, at=at, **options)
    commit()
    return discount


def unique_code(prefix: str) -> str:
    return unique(prefix).upper()


@pytest.mark.usefixtures("ctx")
class TestCoupons:
    @pytest.mark.parametrize(
        "terms, field, message",
        [
            ({"percent_off": 120}, "percent_off", "at most 100"),
            ({"percent_off": 0}, "percent_off", "more than 0"),
            ({"percent_off": "12.345"}, "percent_off", "two decimal places"),
            ({"percent_off": 10, "amount_off": 500, "currency": "USD"}, "amount_off", "not both"),
            ({}, "percent_off", "either a percentage off or an amount off"),
            ({"amount_off": 500}, "currency", "needs its currency"),
            ({"amount_off": -5, "currency": "USD"}, "amount_off", "from 1 to"),
            ({"percent_off": 10, "currency": "USD"}, "currency", "leave the currency out"),
            ({"percent_off": 10, "duration": "repeating"}, "duration_periods", "how many billing periods"),
            ({"percent_off": 10, "duration": "once", "duration_periods": 3}, "duration_periods", "Only a repeating"),
            ({"percent_off": 10, "duration": "weekly"}, "duration", "once, repeating, forever"),
            ({"percent_off": 10, "max_redemptions": 0}, "max_redemptions", "from 1 to"),
            ({"percent_off": 10, "redeem_by": utc(2020, 1, 1)}, "redeem_by", "in the future"),
        ],
    )
    def test_bad_rules_are_refused_with_the_field_and_nothing_is_stored(self, terms, field, message):
        before = db.session.query(Coupon).count()
        with pytest.raises(ValidationFailed) as refused:
            discounts.create_coupon(SYSTEM, "Bad", at=T0, **terms)
        assert refused.value.field == field
        assert message in refused.value.message
        rollback()
        assert db.session.query(Coupon).count() == before

    def test_an_unknown_plan_is_not_found(self):
        with pytest.raises(NotFound, match="Unknown plan platinum; plans are") as refused:
            discounts.create_coupon(SYSTEM, "Bad", percent_off=10, plan_keys=["platinum"], at=T0)
        assert refused.value.field == "plan_keys"

    def test_a_coupon_and_its_code_are_audited_and_read_in_words(self):
        made = coupon(percent_off=20, duration="repeating", duration_periods=3, plan_keys=["professional"])
        assert discounts.terms(made) == "20% off for 3 billing periods, professional plan only"
        promotion_code = code_for(made, " spring-" + made.id[-6:])
        assert promotion_code.code == "SPRING-" + made.id[-6:].upper()
        assert discounts.find_code(promotion_code.code.lower()).id == promotion_code.id
        actions = db.session.execute(
            select(AuditEvent.action).where(AuditEvent.target_id.in_([made.id, promotion_code.id]))
        ).scalars()
        assert sorted(actions) == ["coupon.created", "promotion_code.created"]

    def test_a_code_is_unique_whatever_its_case(self):
        made = coupon(amount_off=500, currency="USD")
        code = unique_code("dup")
        code_for(made, code)
        with pytest.raises(Conflict, match="exists already"):
            discounts.create_promotion_code(SYSTEM, made, code.lower())

    def test_an_unknown_code_is_not_found_in_plain_words(self):
        with pytest.raises(NotFound, match="There is no promotion code NOSUCHCODE"):
            discounts.find_code("nosuchcode")


@pytest.mark.usefixtures("ctx")
class TestInvoices:
    def test_a_20_percent_coupon_for_3_periods_discounts_exactly_3_of_4_renewals(self):
        subscription = subscribe("starter", T0)
        made = coupon(percent_off=20, duration="repeating", duration_periods=3)
        code = code_for(made, unique_code("three"))
        redeem(subscription, code.code, T0 + timedelta(days=3))

        for month in (2, 3, 4, 5):
            run_billing(utc(2027, month, 10, 8))

        renewals = invoices_of(subscription, "period")[1:]
        assert len(renewals) == 4
        # 20 % of $49.00 is $9.80 on each of the first three; the fourth is the full price.
        assert [line_amounts(invoice) for invoice in renewals] == [
            [("plan", 4900), ("discount", -980)],
            [("plan", 4900), ("discount", -980)],
            [("plan", 4900), ("discount", -980)],
            [("plan", 4900)],
        ]
        assert [(i.subtotal, i.discount, i.total) for i in renewals] == [(4900, 980, 3920)] * 3 + [(4900, 0, 4900)]
        assert renewals[0].lines[-1].description == f"Discount: Launch offer (20% off, code {code.code})"
        discount = db.session.execute(select(Discount).where(Discount.subscription_id == subscription.id)).scalar_one()
        assert (discount.status, discount.periods_remaining, discount.invoices_discounted) == ("ended", 0, 3)
        assert discount.amount_discounted == 3 * 980
        assert discounts.active_discount(subscription) is None

    def test_a_mid_period_upgrade_previews_and_invoices_the_discount_to_the_cent(self):
        # 1,362,169 of 2,678,400 seconds left: credit 2492, charge 25378, net 22886;
        # 20 % of 22886 is 4577.2 -> 4577 off, 18309 due.
        subscription = subscribe("starter", T0)
        redeem(subscription, code_for(coupon(percent_off=20, duration="forever"), unique_code("up")).code, T0)
        at = utc(2027, 1, 25, 13, 37, 11)

        preview = subscriptions.preview_change(subscription, "professional", at=at)
        assert [(line.type, line.amount) for line in preview.lines] == [
            ("proration", -2492),
            ("proration", 25378),
            ("discount", -4577),
        ]
        assert (preview.credit, preview.charge, preview.discount, preview.total) == (2492, 25378, 4577, 18309)

        _, invoice = subscriptions.change_plan(SYSTEM, subscription, "professional", at=at)
        commit()
        assert line_amounts(invoice) == [("proration", -2492), ("proration", 25378), ("discount", -4577)]
        assert (invoice.subtotal, invoice.discount, invoice.total) == (22886, 4577, 18309)

    def test_a_proration_within_the_last_discounted_period_is_discounted_and_uses_up_nothing(self):
        subscription = subscribe("starter", T0)
        redeem(subscription, code_for(coupon(percent_off=50, duration="once"), unique_code("once")).code, T0)
        run_billing(T1)  # the one discounted period: Feb 10 - Mar 10
        [_, february] = invoices_of(subscription, "period")
        assert february.discount == 2450
        _, invoice = subscriptions.change_plan(SYSTEM, subscription, "professional", at=utc(2027, 2, 20))
        commit()
        assert invoice.discount == invoice.subtotal // 2 + invoice.subtotal % 2  # half, rounded half-up
        run_billing(utc(2027, 3, 10, 8))
        assert invoices_of(subscription, "period")[-1].discount == 0

    def test_a_fixed_amount_never_takes_more_than_the_subtotal_and_credit_comes_after_it(self):
        cheap = add_plan(f"cheap_{unique_code('p').lower()}", 1500)
        subscription = subscribe(cheap.key, T0)
        credits.grant(SYSTEM, subscription.tenant, 1000, at=T0)
        commit()
        made = coupon(amount_off=1000, currency="USD", duration="repeating", duration_periods=2)
        discounts.apply(SYSTEM, subscription, made, by_operator=True, at=T0)
        commit()
        run_billing(T1)
        renewal = invoices_of(subscription, "period")[-1]
        # 1500 - 1000 discount = 500, then 500 of the 1000 credit: nothing left to pay.
        assert (renewal.subtotal, renewal.discount, renewal.credits_applied, renewal.total) == (1500, 1000, 500, 0)
        assert renewal.status == "paid"

        bigger = coupon(amount_off=90000, currency="USD", duration="forever")
        discounts.apply(SYSTEM, reload(subscription), bigger, by_operator=True, replace=True, at=T1)
        commit()
        run_billing(utc(2027, 3, 10, 8))
        march = invoices_of(subscription, "period")[-1]
        assert (march.subtotal, march.discount, march.total) == (1500, 1500, 0)
        assert line_amounts(march) == [("plan", 1500), ("discount", -1500)]

    def test_a_plan_restricted_coupon_stops_discounting_after_a_change_to_another_plan(self):
        subscription = subscribe("starter", T0)
        made = coupon(percent_off=10, duration="forever", plan_keys=["starter"])
        discounts.apply(SYSTEM, subscription, made, by_operator=True, at=T0)
        commit()
        _, invoice = subscriptions.change_plan(SYSTEM, subscription, "professional", at=utc(2027, 1, 20))
        commit()
        assert invoice.discount == 0
        assert [line.type for line in invoice.lines] == ["proration", "proration"]


@pytest.mark.usefixtures("ctx")
class TestRedeeming:
    def test_the_customers_refusals_are_in_plain_words_and_change_nothing(self):
        subscription = subscribe("starter", T0)
        expired = code_for(coupon(percent_off=10), unique_code("old"), expires_at=T0 + timedelta(hours=1))
        used_up = code_for(coupon(percent_off=10), unique_code("gone"), max_redemptions=1)
        other = subscribe("starter", T0)
        redeem(other, used_up.code, T0)
        pro_only = code_for(coupon(percent_off=10, plan_keys=["professional"]), unique_code("pro"))
        euros = code_for(coupon(amount_off=500, currency="EUR"), unique_code("eur"))
        at = T0 + timedelta(days=1)
        cases = [
            (expired, "expired on Jan 10, 2027"),
            (used_up, "has been used up"),
            (pro_only, "is not valid for the Starter plan; it is for Professional"),
            (euros, "takes an amount in EUR off, but your plan is billed in USD"),
        ]
        for promotion_code, words in cases:
            with pytest.raises(Conflict, match=words):
                discounts.apply(CUSTOMER, subscription, promotion_code.coupon, promotion_code, at=at)
            rollback()
        assert discounts.active_discount(subscription) is None
        assert db.session.get(PromotionCode, used_up.id).times_redeemed == 1

    def test_a_new_discount_replaces_the_old_only_when_confirmed(self):
        subscription = subscribe("starter", T0)
        first = redeem(subscription, code_for(coupon(percent_off=10), unique_code("a")).code, T0)
        second = code_for(coupon(percent_off=25, name="Better offer"), unique_code("b"))
        with pytest.raises(Conflict, match="already has a discount"):
            redeem(subscription, second.code, T0 + timedelta(hours=1))
        rollback()
        quote = discounts.quote(
            subscription, second.coupon, second, subscriptions.next_invoice_estimate(subscription), at=T0
        )
        assert (quote.before, quote.discount, quote.after, quote.replaces.id) == (4900, 1225, 3675, first.id)
        redeem(subscription, second.code, T0 + timedelta(hours=1), replace=True)
        assert db.session.get(Discount, first.id).status == "replaced"
        assert discounts.active_discount(subscription).coupon.name == "Better offer"

    def test_a_customer_redeems_the_same_code_once(self):
        subscription = subscribe("starter", T0)
        code = code_for(coupon(percent_off=10), unique_code("twice"))
        redeem(subscription, code.code, T0)
        with pytest.raises(Conflict, match="already applied"):
            redeem(subscription, code.code, T0 + timedelta(hours=1))

    def test_the_operator_removes_a_discount_and_later_invoices_are_full_price(self):
        subscription = subscribe("starter", T0)
        redeem(subscription, code_for(coupon(percent_off=10, duration="forever"), unique_code("rm")).code, T0)
        discounts.remove(SYSTEM, subscription, at=T0 + timedelta(days=1))
        commit()
        run_billing(T1)
        assert invoices_of(subscription, "period")[-1].discount == 0
        with pytest.raises(NotFound):
            discounts.remove(SYSTEM, subscription)

    def test_a_used_up_discount_is_no_longer_shown_and_a_new_one_needs_no_replacing(self):
        subscription = subscribe("starter", T0)
        redeem(subscription, code_for(coupon(percent_off=10, duration="once"), unique_code("done")).code, T0)
        run_billing(T1)  # its one period: Feb 10 - Mar 10
        assert discounts.current(subscription, utc(2027, 3, 1)) is not None
        assert discounts.current(subscription, utc(2027, 3, 10, 8)) is None
        later = code_for(coupon(percent_off=5, name="Later offer"), unique_code("later"))
        redeem(subscription, later.code, utc(2027, 3, 11))
        statuses = db.session.execute(
            select(Discount.status).where(Discount.subscription_id == subscription.id).order_by(Discount.redeemed_at)
        ).scalars()
        assert list(statuses) == ["ended", "active"]

    def test_ends_on_counts_the_periods_still_to_invoice(self):
        subscription = subscribe("starter", T0)
        discount = redeem(
            subscription,
            code_for(coupon(percent_off=10, duration="repeating", duration_periods=2), unique_code("end")).code,
            T0,
        )
        assert discounts.ends_on(discount, subscription) == utc(2027, 4, 10, 8)
        run_billing(T1)
        assert discounts.ends_on(reload_discount(discount), reload(subscription)) == utc(2027, 4, 10, 8)


def reload_discount(discount: Discount) -> Discount:
    db.session.refresh(discount)
    return discount


def test_two_tenants_racing_for_the_last_redemption_get_it_once(committed_app):
    """max_redemptions 1 on the code, two requests at once: exactly one discount, counted once."""
    with committed_app.test_request_context():
        made = discounts.create_coupon(SYSTEM, "Race", percent_off=10, at=T0 - timedelta(days=1))
        promotion_code = discounts.create_promotion_code(SYSTEM, made, "RACE-ONE", max_redemptions=1)
        coupon_id, code_id = made.id, promotion_code.id
        tenants = []
        for _ in range(2):
            tenant = bare_tenant()
            subscriptions.start(SYSTEM, tenant, "starter", at=T0)
            tenants.append(tenant.tenant_id)
        commit()

    barrier, outcomes = threading.Barrier(2), []

    def redeem_it(tenant_id: str):
        with committed_app.test_request_context():
            subscription = subscriptions.subscription_of(db.session.get(Tenant, tenant_id))
            code = discounts.find_code("race-one")
            barrier.wait()
            try:
                discounts.apply(CUSTOMER, subscription, code.coupon, code, at=T0 + timedelta(days=1))
                commit()
                outcomes.append("ok")
            except Conflict as refused:
                rollback()
                outcomes.append(refused.message)
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                rollback()
                outcomes.append(repr(error))

    threads = [threading.Thread(target=redeem_it, args=(tenant_id,)) for tenant_id in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["The code RACE-ONE has been used up.", "ok"]

    with committed_app.test_request_context():
        assert db.session.get(PromotionCode, code_id).times_redeemed == 1
        assert db.session.get(Coupon, coupon_id).times_redeemed == 1
        assert db.session.query(Discount).filter(Discount.coupon_id == coupon_id).count() == 1


def test_one_tenant_submitting_twice_at_once_redeems_once(committed_app):
    with committed_app.test_request_context():
        made = discounts.create_coupon(SYSTEM, "Double", percent_off=15, at=T0 - timedelta(days=1))
        discounts.create_promotion_code(SYSTEM, made, "DOUBLE-SUBMIT")
        coupon_id = made.id
        tenant = bare_tenant()
        subscriptions.start(SYSTEM, tenant, "starter", at=T0)
        tenant_id = tenant.tenant_id
        commit()

    barrier, outcomes = threading.Barrier(2), []

    def redeem_it():
        with committed_app.test_request_context():
            subscription = subscriptions.subscription_of(db.session.get(Tenant, tenant_id))
            code = discounts.find_code("double-submit")
            barrier.wait()
            try:
                discounts.apply(CUSTOMER, subscription, code.coupon, code, at=T0 + timedelta(days=1))
                commit()
                outcomes.append("ok")
            except Conflict as refused:
                rollback()
                outcomes.append(refused.message)

    threads = [threading.Thread(target=redeem_it) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["The code DOUBLE-SUBMIT is already applied to this subscription.", "ok"]
    with committed_app.test_request_context():
        assert db.session.get(Coupon, coupon_id).times_redeemed == 1


@given(
    st.integers(min_value=-5, max_value=10**12),
    st.decimals(min_value=Decimal("0.01"), max_value=100, places=2, allow_nan=False, allow_infinity=False),
)
def test_a_percentage_off_is_the_exact_share_rounded_half_up_never_more_than_the_base(base, percent):
    off = discounts.amount_off(Coupon(percent_off=percent), base)
    exact = Fraction(base) * Fraction(percent) / 100
    assert off == (min(math.floor(exact + Fraction(1, 2)), base) if base > 0 else 0)
