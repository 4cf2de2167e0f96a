"""ISO 4217 currency codes and the number of decimals (minor units) each one allows."""

from __future__ import annotations

# Codes with a minor unit other than 2 are listed apart; every other active code uses 2.
_ZERO_DECIMALS = (
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
).split()
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND".split()
_FOUR_DECIMALS = "CLF UYW".split()
_TWO_DECIMALS = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN "
    "ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD "
    "KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR "
    "MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON "
    "RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT "
    "TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
).split()

MINOR_UNITS: dict[str, int] = {
    **{code: 0 for code in _ZERO_DECIMALS},
    **{code: 2 for code in _TWO_DECIMALS},
    **{code: 3 for code in _THREE_DECIMALS},
    **{code: 4 for code in _FOUR_DECIMALS},
}
"""Active ISO 4217 currency codes mapped to the decimals an amount may carry."""


def minor_units(currency: str) -> int | None:
    """Return how many decimals ``currency`` allows, or None if it is not a known code."""
    return MINOR_UNITS.get(currency)
