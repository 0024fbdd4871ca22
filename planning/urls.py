from django.urls import path

from planning.apis import BudgetTierApi, ProjectionApi

urlpatterns = [
    path("planning/budget-tier/", BudgetTierApi.as_view(), name="planning-budget-tier"),
    path("planning/projections/", ProjectionApi.as_view(), name="planning-projections"),
]
