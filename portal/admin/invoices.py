"""Console: one invoice of any tenant, its PDF, mark paid, mark uncollectible and void."""

from portal.access import current_actor, operator_required
from portal.admin.blueprint import bp
from portal.admin.forms import MarkPaidForm, UncollectibleInvoiceForm, VoidInvoiceForm
from portal.billing import invoices as billing_invoices
from portal.billing.pdf import pdf_download
from portal.extensions import db
from portal.models import Invoice, utcnow
from portal.web import act, form_errors_status, render


def _load_invoice(invoice_id: str) -> Invoice:
    return db.get_or_404(Invoice, invoice_id)


@bp.get("/invoices/<invoice_id>")
@operator_required
def invoice(invoice_id: str):
    """One invoice of any tenant, with the operator's mark-paid, uncollectible and void actions."""
    return _invoice_page(_load_invoice(invoice_id))


@bp.get("/invoices/<invoice_id>.pdf")
@operator_required
def invoice_pdf(invoice_id: str):
    """The PDF exactly as the customer downloads it."""
    return pdf_download(_load_invoice(invoice_id))


def _invoice_page(
    invoice: Invoice,
    paid_form: MarkPaidForm | None = None,
    void_form: VoidInvoiceForm | None = None,
    uncollectible_form: UncollectibleInvoiceForm | None = None,
    status: int = 200,
):
    return render(
        "admin/invoice.html",
        status=status,
        invoice=invoice,
        payment_failed=bool(billing_invoices.failed_among([invoice])),
        paid_form=paid_form or MarkPaidForm(formdata=None),
        void_form=void_form or VoidInvoiceForm(formdata=None),
        uncollectible_form=uncollectible_form or UncollectibleInvoiceForm(formdata=None),
    )


def _invoice_action(invoice: Invoice, form_name: str, form, action, success: str):
    """Validate ``form``, run ``action(form)`` on the invoice, commit; a refusal changes nothing."""
    if not form.validate_on_submit():
        return _invoice_page(invoice, status=form_errors_status(), **{form_name: form})

    def run() -> str:
        action(form)
        return success

    return act(run, "admin.invoice", invoice_id=invoice.id)


@bp.post("/invoices/<invoice_id>/mark-paid")
@operator_required
def mark_invoice_paid(invoice_id: str):
    """Record a payment made outside Stripe (a bank transfer)."""
    invoice = _load_invoice(invoice_id)
    return _invoice_action(
        invoice,
        "paid_form",
        MarkPaidForm(),
        lambda form: billing_invoices.mark_paid(current_actor(), invoice, form.reference.data, utcnow()),
        f"Invoice {invoice.number} is marked paid.",
    )


@bp.post("/invoices/<invoice_id>/mark-uncollectible")
@operator_required
def mark_invoice_uncollectible(invoice_id: str):
    """Write an open invoice off as bad debt: no more charges or retries, and its dunning ends."""
    invoice = _load_invoice(invoice_id)
    return _invoice_action(
        invoice,
        "uncollectible_form",
        UncollectibleInvoiceForm(),
        lambda form: billing_invoices.mark_uncollectible(current_actor(), invoice, form.reason.data, utcnow()),
        f"Invoice {invoice.number} is marked uncollectible.",
    )


@bp.post("/invoices/<invoice_id>/void")
@operator_required
def void_invoice(invoice_id: str):
    """Void an invoice that should never have been issued; it no longer counts as due."""
    invoice = _load_invoice(invoice_id)
    return _invoice_action(
        invoice,
        "void_form",
        VoidInvoiceForm(),
        lambda form: billing_invoices.void(current_actor(), invoice, form.reason.data, utcnow()),
        f"Invoice {invoice.number} is void.",
    )
