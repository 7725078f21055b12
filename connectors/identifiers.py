"""Identifier slots a profile can hold; partners declare which ones they read."""

from django.db import models


class Slot(models.TextChoices):
    EMAIL = "email", "Email address"
    PHONE = "phone", "Phone number"
    CUSTOMER_ID = "customer_id", "Customer id"
    MOBILE_AD_ID = "mobile_ad_id", "Mobile advertising id (IDFA / AAID)"
    XANDR_UID = "xandr_uid", "Xandr user id (cookie sync)"
    GOOGLE_ID = "google_id", "Google user id (cookie sync)"
    TTD_ID = "ttd_id", "The Trade Desk id (cookie sync)"
    META_BROWSER_ID = "meta_fbp", "Meta browser id (_fbp)"
    GCLID = "gclid", "Google click id (gclid)"
    PARTNER_NUMBER = "partner_number", "Partner number (custom)"
