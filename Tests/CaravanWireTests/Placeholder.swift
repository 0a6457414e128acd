// CaravanWireTests
