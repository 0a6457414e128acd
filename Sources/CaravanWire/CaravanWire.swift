// CaravanWire module.
